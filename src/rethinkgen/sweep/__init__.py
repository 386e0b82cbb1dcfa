"""Sweeps: grids of randomization-test runs from a TOML spec into a SQLite results store, resumable.

- :mod:`~rethinkgen.sweep.spec` — TOML spec -> validated, resolved runs (``load_spec``);
- :mod:`~rethinkgen.sweep.store` — the results store (``Store``) and the sweep lock;
- :mod:`~rethinkgen.sweep.checkpoint` — atomic, digest-checked checkpoints with a previous generation;
- :mod:`~rethinkgen.sweep.executors` — local (in-process / worker processes) and Ray executors;
- :mod:`~rethinkgen.sweep.runner` — the driver (``run_sweep``): skip, resume, record, stop cleanly;
- :mod:`~rethinkgen.sweep.progress` — the live display and quiet log lines;
- :mod:`~rethinkgen.sweep.cli` — ``rethinkgen sweep plan|run|status`` and ``rethinkgen export``.
"""
