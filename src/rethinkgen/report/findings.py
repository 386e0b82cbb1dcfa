"""The paper's qualitative findings (§2, §3), checked on the runs of one dataset.

Each :class:`Finding` restates one claim of the paper (with its certainty mark) and what our runs say
about it: ``ok`` True (our runs agree), False (they do not), or None (the store lacks the runs to say).
The details quote the stored numbers they rest on, so a reader can check the verdict.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from rethinkgen.report.figures import level_lines, model_sort
from rethinkgen.report.runs import NUM_CLASSES, cfg, finite, is_finished, labels_kind, setting_key, spread

#: Test error may dip by this many points between neighbouring levels and still count as "rising".
TOLERANCE_PTS = 2.0
#: At p = 1, a test error within this many points of chance counts as "at chance".
CHANCE_PTS = 5.0
#: With a regularizer on, random labels count as fit at this training accuracy (paper: Inception V3 with
#: dropout and weight decay reaches ~90% top-1 on ImageNet's random labels, "extremely well if not
#: perfectly").
REGULARIZED_FIT = 0.90


@dataclass
class Finding:
    claim: str  # the paper's claim
    mark: str  # its certainty mark in paper-reference.md
    ok: bool | None
    details: list[str] = field(default_factory=list)


def _verdict(flags: list[bool]) -> bool | None:
    return None if not flags else all(flags)


def _regularized(run: dict) -> bool:
    return (cfg(run, "weight_decay") or 0) > 0 or (cfg(run, "dropout") or 0) > 0 or bool(cfg(run, "augment"))


def random_labels_fit(runs: Sequence[dict]) -> Finding:
    f = Finding("Without explicit regularizers, random labels are fit perfectly (100% training accuracy) "
                "with unchanged hyperparameters", "V", None)
    flags = []
    for run in sorted((r for r in runs if is_finished(r) and labels_kind(r) == "random" and not _regularized(r)),
                      key=lambda r: (model_sort(cfg(r, "model")), str(r.get("name")))):
        ok = run.get("status") == "converged"
        flags.append(ok)
        acc = run.get("train_acc")
        f.details.append(f"{run.get('name') or cfg(run, 'model')}: train accuracy "
                         f"{100 * acc:.2f}% ({run.get('status')})" if finite(acc) else
                         f"{run.get('name')}: no train accuracy ({run.get('status')})")
    f.ok = _verdict(flags)
    return f


def test_error_rises(runs: Sequence[dict]) -> Finding:
    f = Finding("Test error deteriorates steadily as the label corruption level rises", "V", None)
    flags = []
    for key, levels in sorted(level_lines(runs).items(), key=lambda kv: model_sort(dict(kv[0])["model"])):
        if len(levels) < 3:
            continue
        xs = sorted(levels)
        errs = [spread([100 * (1 - r["test_acc"]) for r in levels[x].values()
                        if finite(r.get("test_acc"))])[0] for x in xs]
        ok = all(b >= a - TOLERANCE_PTS for a, b in zip(errs, errs[1:], strict=False)) and errs[-1] > errs[0]
        flags.append(ok)
        f.details.append(f"{dict(key)['model']}: " + " → ".join(f"{e:.1f}%" for e in errs)
                         + f" at p = {', '.join(f'{x:g}' for x in xs)}")
    f.ok = _verdict(flags)
    return f


def chance_at_random(runs: Sequence[dict]) -> Finding:
    f = Finding("As the noise level approaches 1, the test error converges to chance (90% for 10 classes)",
                "V", None)
    flags = []
    for run in runs:
        k = NUM_CLASSES.get(cfg(run, "data"))
        if not (is_finished(run) and labels_kind(run) == "random" and k and finite(run.get("test_acc"))):
            continue
        err, chance = 100 * (1 - run["test_acc"]), 100 * (1 - 1 / k)
        flags.append(abs(err - chance) <= CHANCE_PTS)
        f.details.append(f"{run.get('name') or cfg(run, 'model')}: test error {err:.1f}% "
                         f"(chance {chance:g}%)")
    f.ok = _verdict(flags)
    return f


def slowdown(runs: Sequence[dict]) -> Finding:
    f = Finding("Fitting random labels takes longer, but only by a small constant factor", "V", None)
    flags = []
    for key, levels in sorted(level_lines(runs).items(), key=lambda kv: model_sort(dict(kv[0])["model"])):
        if 0.0 not in levels or 1.0 not in levels:
            continue
        for seed, run in sorted(levels[1.0].items()):
            base = levels[0.0].get(seed)
            if base is None or not finite(base.get("converged_step")):
                continue
            if not finite(run.get("converged_step")):
                flags.append(False)
                f.details.append(f"{dict(key)['model']} (seed {seed}): random labels not fit within the run")
                continue
            ratio = run["converged_step"] / base["converged_step"]
            flags.append(1.0 <= ratio <= 20.0)
            f.details.append(f"{dict(key)['model']} (seed {seed}): {run['converged_step']} vs "
                             f"{base['converged_step']} steps, ×{ratio:.2f}")
    f.ok = _verdict(flags)
    return f


def input_corruptions(runs: Sequence[dict]) -> Finding:
    f = Finding("Random pixels and gaussian inputs are fit too, and start converging faster than random "
                "labels", "V", None)
    by_setting: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if is_finished(run):
            by_setting[setting_key(run)][cfg(run, "corruption")].append(run)
    flags = []
    for key, groups in sorted(by_setting.items(), key=lambda kv: model_sort(dict(kv[0])["model"])):
        rand = [r.get("converged_step") for r in groups.get("random_labels", [])]
        for name in ("random_pixels", "gaussian", "shuffled_pixels"):
            for run in groups.get(name, []):
                fit = run.get("status") == "converged"
                text = f"{dict(key)['model']}, {name}: {run.get('status')}"
                ok = fit
                if fit:
                    text += f" at step {run['converged_step']}"
                    if name != "shuffled_pixels" and rand and all(finite(s) for s in rand):
                        faster = run["converged_step"] < min(rand)
                        ok = ok and faster
                        text += f" ({'before' if faster else 'not before'} random labels: {min(rand)})"
                flags.append(ok)
                f.details.append(text)
    f.ok = _verdict(flags)
    return f


def regularized_random_fit(runs: Sequence[dict]) -> Finding:
    f = Finding("With explicit regularizers (weight decay, dropout, augmentation) random labels are still fit "
                "“extremely well if not perfectly” (here: at least 90% training accuracy; the paper's "
                "exception is AlexNet with weight decay)", "V", None)
    flags = []
    for run in runs:
        if not (is_finished(run) and labels_kind(run) == "random"):
            continue
        if not _regularized(run):
            continue
        ok = finite(run.get("train_acc")) and run["train_acc"] >= REGULARIZED_FIT
        if cfg(run, "model") != "alexnet_small" or (cfg(run, "weight_decay") or 0) <= 0:
            flags.append(ok)
        acc = run.get("train_acc")
        f.details.append(f"{run.get('name') or cfg(run, 'model')}: "
                         + (f"{100 * acc:.2f}% train" if finite(acc) else "no train accuracy")
                         + f" ({run.get('status')})")
    f.ok = _verdict(flags)
    return f


def all_findings(runs: Sequence[dict]) -> list[Finding]:
    return [random_labels_fit(runs), test_error_rises(runs), chance_at_random(runs), slowdown(runs),
            input_corruptions(runs), regularized_random_fit(runs)]
