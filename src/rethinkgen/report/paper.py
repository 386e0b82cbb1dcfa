"""The paper's numbers as data, with the certainty mark of each (``paper_reference.json``).

Every number we know of Zhang et al. (ICLR 2017) -- Table 1, Table 2, the expected Figure 1c endpoints,
the Section 5 kernel results and norms, Table 4 (random labels with weight decay), parameter counts --
lives in ``paper_reference.json`` beside this module, transcribed from ``paper-reference.md``. Each value
carries a mark: ``V`` (verified from the paper text), ``V2`` (table value confirmed by two
transcriptions), ``D`` (derived by arithmetic), ``S`` (secondary source), ``R`` (recalled only), ``?``
(not found). The report and the tests read the same file, so they cannot drift apart.

All accuracies and errors are in percent, as printed in the paper.
"""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from importlib import resources
from typing import Any

MARKS = ("V", "V2", "D", "S", "R", "?")

#: The corruptions of Figure 1a, in the paper's legend order.
FIGURE1_CORRUPTIONS = ("true_labels", "random_labels", "shuffled_pixels", "random_pixels", "gaussian")


@lru_cache(maxsize=1)
def _load() -> dict[str, Any]:
    text = resources.files("rethinkgen.report").joinpath("paper_reference.json").read_text("utf-8")
    return json.loads(text)


def load_reference() -> dict[str, Any]:
    """The whole reference (a fresh deep copy, so callers may modify it)."""
    return copy.deepcopy(_load())


def mark_meaning(mark: str) -> str:
    """What a certainty mark means (``"V"`` -> "verified from the paper text ...")."""
    return _load()["marks"][mark]


def paper_model_name(model: str) -> str:
    """The paper's name for one of our models ("inception_small" -> "Inception (small)"); else ``model``."""
    entry = _load()["models"].get(model)
    return entry["paper_name"] if entry else model


def paper_params(model: str) -> int | None:
    """Table 1's parameter count of a paper model, or None for models the paper has not."""
    entry = _load()["models"].get(model)
    return entry["params"] if entry else None


def table1_rows() -> list[dict[str, Any]]:
    """Table 1 (CIFAR-10), in the paper's order; accuracies in percent, each row with its mark."""
    return copy.deepcopy(_load()["table1"]["rows"])


def table1_lookup(model: str, random_crop: bool, weight_decay: bool, labels: str) -> dict[str, Any] | None:
    """The Table 1 row for ``model`` x random crop x weight decay x ``labels`` ("true" | "random")."""
    for row in _load()["table1"]["rows"]:
        if (row["model"], row["random_crop"], row["weight_decay"], row["labels"]) == (
            model, bool(random_crop), bool(weight_decay), labels
        ):
            return dict(row)
    return None


def table4_lookup(model: str, random_crop: bool, weight_decay: bool, labels: str,
                  lr_decay: float | None = None) -> dict[str, Any] | None:
    """The appendix Table 4 row (random labels fit *with* a regularizer), if the paper has one.

    Rows that the paper obtained with a different learning-rate decay (0.999 instead of 0.95) only
    match a run with that decay.
    """
    for row in _load()["table4"]["rows"]:
        if (row["model"], row["random_crop"], row["weight_decay"], row["labels"]) != (
            model, bool(random_crop), bool(weight_decay), labels
        ):
            continue
        if "lr_decay" in row and (lr_decay is None or abs(lr_decay - row["lr_decay"]) > 1e-12):
            continue
        return dict(row)
    return None


def table2_rows() -> list[dict[str, Any]]:
    """Table 2 (ImageNet, Inception V3); every cell is ``{"value", "mark"[, "best", "best_mark"]}``."""
    return copy.deepcopy(_load()["table2"]["rows"])


def figure1c_expected() -> list[dict[str, Any]]:
    """Expected Figure 1c endpoints (test error in percent at p = 0 and p = 1), all marked ``D``."""
    return copy.deepcopy(_load()["figure1"]["expected_test_error"]["points"])


def kernel_rows() -> list[dict[str, Any]]:
    """Section 5 / Table 3 kernel results: test error in percent, with ℓ2 norms where stated."""
    return copy.deepcopy(_load()["section5_kernels"]["rows"])


def feature_kind(features: Any) -> str:
    """Classify a stored feature-map name as "none", "wavelet" or "random_conv" (else the name itself).

    The paper's three feature maps: raw pixels, a Gabor wavelet (scattering) transform, and a random
    convolutional network.
    """
    name = "" if features is None else str(features).lower()
    if name in ("", "none", "raw", "pixels", "identity"):
        return "none"
    if any(word in name for word in ("wavelet", "scatter", "gabor")):
        return "wavelet"
    if "conv" in name or "random" in name:
        return "random_conv"
    return name


def kernel_lookup(data: str, features: Any, regularized: bool) -> dict[str, Any] | None:
    """The paper's Section 5 result for ``data`` x feature map x (ℓ2 regularization on/off), if any."""
    kind = feature_kind(features)
    for row in _load()["section5_kernels"]["rows"]:
        if (row["data"], row["features"], row["regularized"]) == (data, kind, bool(regularized)):
            return dict(row)
    return None
