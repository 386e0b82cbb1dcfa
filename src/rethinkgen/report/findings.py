"""The paper's qualitative findings (§2, §3), checked on the runs of one dataset.

Each :class:`Finding` restates one claim of the paper (with its certainty mark) and what our runs say
about it: ``ok`` True (✓ agrees), False (✗ differs) or None (? inconclusive, with ``why``). The details
quote the stored numbers they rest on, so a reader can check the verdict.

Only evidence counts (:mod:`rethinkgen.report.evidence`): diverged, failed and unfinished runs are
named in ``left_out`` and enter no verdict. A run that stopped at max_epochs before reaching the
target is evidence of its numbers but not of fitting: a check it would fail is inconclusive, never
"differs" (more epochs might have changed it); a check its numbers pass whatever the fitting (test
error at chance, at least 90% training accuracy with a regularizer) agrees. So a finding differs only
on runs that reached their target; it is inconclusive (with ``why``, e.g. "3 of 6 runs stopped at
max_epochs before reaching the target train accuracy") when a check could not be decided or no run of
its kind finished as intended; it agrees when every check agrees.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from rethinkgen.report.evidence import is_evidence, left_out_text, not_fit_text, stopped_at_budget
from rethinkgen.report.plot import left_out_levels, level_lines, line_titles, model_sort
from rethinkgen.report.runs import NUM_CLASSES, cfg, finite, labels_kind, setting_key, spread

#: Test error may dip by this many points between neighbouring levels and still count as "rising".
TOLERANCE_PTS = 2.0
#: At p = 1, a test error within this many points of chance counts as "at chance".
CHANCE_PTS = 5.0
#: With a regularizer on, random labels count as fit at this training accuracy (paper: Inception V3 with
#: dropout and weight decay reaches ~90% top-1 on ImageNet's random labels, "extremely well if not
#: perfectly").
REGULARIZED_FIT = 0.90
#: Random labels take "a small constant factor" longer: ratios of convergence steps in this range agree.
SLOWDOWN_RANGE = (1.0, 20.0)

VERDICTS = {True: "✓ agrees", False: "✗ differs", None: "? inconclusive"}


@dataclass
class Finding:
    claim: str  # the paper's claim
    mark: str  # its certainty mark in paper-reference.md
    ok: bool | None  # True: agrees, False: differs, None: inconclusive (see ``why``)
    details: list[str] = field(default_factory=list)
    why: str | None = None  # why the finding is inconclusive
    left_out: str | None = None  # runs of this kind that are not evidence ("3 diverged")

    @property
    def verdict(self) -> str:
        """"✓ agrees", "✗ differs" or "? inconclusive"."""
        return VERDICTS[self.ok]


class _Checks:
    """The checks behind one finding: each agrees (True), differs (False) or cannot decide (None)."""

    def __init__(self) -> None:
        self.flags: list[bool | None] = []
        self.reasons: list[str] = []
        self.runs: list[dict] = []

    def add(self, ok: bool | None, runs: Iterable[dict], reason: str | None = None) -> None:
        self.flags.append(ok)
        self.runs.extend(runs)
        if ok is None and reason and reason not in self.reasons:
            self.reasons.append(reason)

    def conclude(self, f: Finding, candidates: Iterable[dict]) -> Finding:
        f.left_out = left_out_text(candidates)
        if False in self.flags:
            f.ok = False
        elif None in self.flags or not self.flags:
            f.ok = None
            why = self.reasons or ([] if self.flags else ["no runs of this kind finished as intended"])
            stopped = not_fit_text(self.runs)
            if stopped and stopped not in why:
                why = [stopped, *why]
            f.why = "; ".join(why) if why else None
        else:
            f.ok = True
        return f


def _regularized(run: dict) -> bool:
    return (cfg(run, "weight_decay") or 0) > 0 or (cfg(run, "dropout") or 0) > 0 or bool(cfg(run, "augment"))


def _name(run: dict) -> str:
    return str(run.get("name") or cfg(run, "model"))


def random_labels_fit(runs: Sequence[dict]) -> Finding:
    f = Finding("Without explicit regularizers, random labels are fit perfectly (100% training accuracy) "
                "with unchanged hyperparameters", "V", None)
    checks = _Checks()
    candidates = [r for r in runs if labels_kind(r) == "random" and not _regularized(r)]
    for run in sorted(filter(is_evidence, candidates), key=lambda r: (model_sort(cfg(r, "model")), _name(r))):
        target = cfg(run, "target_train_acc") or 1.0
        f.details.append(f"{_name(run)}: train accuracy {100 * run['train_acc']:.2f}% ({run.get('status')})")
        if stopped_at_budget(run):
            checks.add(None, [run])
        elif target < 1.0 and run["train_acc"] < 1.0:
            checks.add(None, [run], f"{_name(run)} stopped at its target {100 * target:g}% < 100%")
        else:
            checks.add(True, [run])
    return checks.conclude(f, candidates)


def test_error_rises(runs: Sequence[dict]) -> Finding:
    f = Finding("Test error deteriorates steadily as the label corruption level rises", "V", None)
    checks = _Checks()
    lines = level_lines(runs)
    titles = line_titles(list(lines))  # the model, and the settings that tell its lines apart
    for key, levels in sorted(lines.items(), key=lambda kv: model_sort(dict(kv[0])["model"])):
        if len(levels) < 3:
            continue
        xs = sorted(levels)
        group = [r for x in xs for r in levels[x].values()]
        errs = [spread([100 * (1 - r["test_acc"]) for r in levels[x].values()])[0] for x in xs]
        ok = all(b >= a - TOLERANCE_PTS for a, b in zip(errs, errs[1:], strict=False)) and errs[-1] > errs[0]
        text = (f"{titles[key]}: " + " → ".join(f"{e:.1f}%" for e in errs)
                + f" at p = {', '.join(f'{x:g}' for x in xs)}")
        if any(stopped_at_budget(r) for r in group):
            checks.add(None, group)
            text += " (not all runs reached the target: test error before fitting)"
        else:
            checks.add(ok, group)
        f.details.append(text)
    return checks.conclude(f, _level_candidates(runs, lines))


def _level_candidates(runs: Sequence[dict], lines: dict) -> list[dict]:
    """The runs a label-level finding is about: its lines' settings and the label runs left out."""
    left = {id(r) for levels in left_out_levels(runs).values() for group in levels.values() for r in group}
    return [r for r in runs if id(r) in left or setting_key(r) in lines]


def chance_at_random(runs: Sequence[dict]) -> Finding:
    f = Finding("As the noise level approaches 1, the test error converges to chance (90% for 10 classes)",
                "V", None)
    checks = _Checks()
    candidates = [r for r in runs if labels_kind(r) == "random" and NUM_CLASSES.get(cfg(r, "data"))]
    for run in filter(is_evidence, candidates):
        k = NUM_CLASSES[cfg(run, "data")]
        err, chance = 100 * (1 - run["test_acc"]), 100 * (1 - 1 / k)
        at_chance = abs(err - chance) <= CHANCE_PTS
        f.details.append(f"{_name(run)}: test error {err:.1f}% (chance {chance:g}%, {run.get('status')})")
        checks.add(None if stopped_at_budget(run) and not at_chance else at_chance, [run])
    return checks.conclude(f, candidates)


def slowdown(runs: Sequence[dict]) -> Finding:
    f = Finding("Fitting random labels takes longer, but only by a small constant factor", "V", None)
    checks = _Checks()
    lines = level_lines(runs)
    titles = line_titles(list(lines))
    for key, levels in sorted(lines.items(), key=lambda kv: model_sort(dict(kv[0])["model"])):
        if 0.0 not in levels or 1.0 not in levels:
            continue
        model = titles[key]
        for seed, run in sorted(levels[1.0].items(), key=lambda kv: str(kv[0])):
            base = levels[0.0].get(seed)
            if base is None:
                continue
            pair = [base, run]
            if not (finite(base.get("converged_step")) and finite(run.get("converged_step"))):
                checks.add(None, pair)
                which = "true" if not finite(base.get("converged_step")) else "random"
                f.details.append(f"{model} (seed {seed}): {which} labels not fit within the run "
                                 f"({(base if which == 'true' else run).get('status')})")
                continue
            ratio = run["converged_step"] / base["converged_step"]
            checks.add(SLOWDOWN_RANGE[0] <= ratio <= SLOWDOWN_RANGE[1], pair)
            f.details.append(f"{model} (seed {seed}): {run['converged_step']} vs {base['converged_step']} "
                             f"steps, ×{ratio:.2f}")
    return checks.conclude(f, _level_candidates(runs, lines))


def input_corruptions(runs: Sequence[dict]) -> Finding:
    f = Finding("Random pixels and gaussian inputs are fit too, and start converging faster than random "
                "labels", "V", None)
    checks = _Checks()
    inputs = ("random_pixels", "gaussian", "shuffled_pixels")
    candidates = [r for r in runs if cfg(r, "corruption") in (*inputs, "random_labels")]
    by_setting: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in filter(is_evidence, candidates):
        by_setting[setting_key(run)][cfg(run, "corruption")].append(run)
    titles = line_titles(list(by_setting))
    for key, groups in sorted(by_setting.items(), key=lambda kv: model_sort(dict(kv[0])["model"])):
        rand = groups.get("random_labels", [])
        for name in inputs:
            for run in groups.get(name, []):
                text = f"{titles[key]}, {name}: {run.get('status')}"
                if stopped_at_budget(run):
                    checks.add(None, [run])
                    f.details.append(text)
                    continue
                text += f" at step {run['converged_step']}"
                ok: bool | None = True
                if name != "shuffled_pixels" and rand:
                    # a random-label run that stopped at max_epochs had not fit by its last step
                    bounds = [r["converged_step"] if finite(r.get("converged_step")) else r.get("steps")
                              for r in rand]
                    if all(finite(b) for b in bounds):
                        ok = run["converged_step"] < min(bounds)
                        text += f" ({'before' if ok else 'not before'} random labels: {min(bounds)})"
                checks.add(ok, [run, *rand])
                f.details.append(text)
    return checks.conclude(f, candidates)


def regularized_random_fit(runs: Sequence[dict]) -> Finding:
    f = Finding("With explicit regularizers (weight decay, dropout, augmentation) random labels are still fit "
                "“extremely well if not perfectly” (here: at least 90% training accuracy; the paper's "
                "exception is AlexNet with weight decay)", "V", None)
    checks = _Checks()
    candidates = [r for r in runs if labels_kind(r) == "random" and _regularized(r)]
    for run in filter(is_evidence, candidates):
        ok = run["train_acc"] >= REGULARIZED_FIT
        exception = cfg(run, "model") == "alexnet_small" and (cfg(run, "weight_decay") or 0) > 0
        if not exception:
            checks.add(None if stopped_at_budget(run) and not ok else ok, [run])
        f.details.append(f"{_name(run)}: {100 * run['train_acc']:.2f}% train ({run.get('status')})"
                         + (" — the paper's exception, not counted" if exception else ""))
    return checks.conclude(f, candidates)


def all_findings(runs: Sequence[dict]) -> list[Finding]:
    return [random_labels_fit(runs), test_error_rises(runs), chance_at_random(runs), slowdown(runs),
            input_corruptions(runs), regularized_random_fit(runs)]
