"""Sweeps: grids of randomization-test runs from a TOML spec into a SQLite results store, resumable.

- :mod:`~rethinkgen.sweep.spec` — TOML spec -> validated, resolved runs (``load_spec``);
- :mod:`~rethinkgen.sweep.store` — the results store (``Store``); its schema and migrations in
  :mod:`~rethinkgen.sweep.schema`, the one-driver lock in :mod:`~rethinkgen.sweep.lock`, provenance in
  :mod:`~rethinkgen.sweep.provenance`;
- :mod:`~rethinkgen.sweep.checkpoint` — atomic, digest-checked checkpoints with a previous generation;
- :mod:`~rethinkgen.sweep.worker` — what a worker does with a work item (one run or a fused group),
  the events it reports, and the numerics check before a resume;
- :mod:`~rethinkgen.sweep.executors` — the executor interface and the local executor (in-process, or
  the process pool of :mod:`~rethinkgen.sweep.pool`); Ray in :mod:`~rethinkgen.sweep.ray_executor`;
- :mod:`~rethinkgen.sweep.sizing` — how many runs fit in one fused group on a GPU;
- :mod:`~rethinkgen.sweep.runner` — the driver (``run_sweep``): skip, resume, record, stop cleanly;
- :mod:`~rethinkgen.sweep.plan` — what ``sweep run`` will train together, where (``sweep plan``);
- :mod:`~rethinkgen.sweep.interrupts` — Ctrl-C / SIGTERM held while an event is recorded;
- :mod:`~rethinkgen.sweep.progress` — the live display and quiet log lines;
- :mod:`~rethinkgen.sweep.cli` — ``rethinkgen sweep plan|run|status`` and ``rethinkgen export``.
"""
