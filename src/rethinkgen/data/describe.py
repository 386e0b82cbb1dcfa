"""What a dataset is, in numbers a researcher can check: for run summaries and ``rethinkgen data inspect``.

:func:`data_info` is the compact record copied into every run's summary (``summary["data"]``): the
source, the layout found and the scaling applied, the classes and their mapping, class counts.
:func:`inspect_dataset` adds what ``rethinkgen data inspect`` shows: value range and per-channel
moments, and what each corruption of paper §2.1 will change on this data.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rethinkgen.data.dataset import Dataset

__all__ = ["data_info", "inspect_dataset", "inspect_streamed", "inspection_rows"]

PAPER_ORDER = ("true_labels", "partial_labels", "random_labels", "shuffled_pixels", "random_pixels", "gaussian")

META_KEYS = ("source", "path", "stored_shape", "stored_dtype", "layout_found", "layout_reason", "scaling",
             "classes", "class_mapping", "conversion", "test_split", "official", "sha256", "cache", "from_cache")


def _counts(y: torch.Tensor, k: int) -> list[int]:
    return torch.bincount(y.to(torch.int64).cpu(), minlength=k)[:k].tolist() if y.numel() else [0] * k


def data_info(ds: Dataset) -> dict[str, Any]:
    """The dataset's record for a run summary (JSON-serialisable).

    Keys: ``dataset``, ``layout``, ``input_shape``, ``n_train``, ``n_test``, ``num_classes``,
    ``class_counts_train``/``_test`` (per class index), and from ``ds.meta`` where the source records
    them: ``layout_found``, ``layout_reason``, ``scaling``, ``classes`` (stored label or name of each
    class index), ``class_mapping`` ({stored label: index} when not the identity), ``path``, ... and
    the subset drawn (``n_train_available``, ``subset_seed``).
    """
    meta = ds.meta
    info: dict[str, Any] = {
        "dataset": ds.name, "layout": ds.layout, "input_shape": list(ds.input_shape),
        "n_train": ds.n_train, "n_test": ds.n_test, "num_classes": ds.num_classes,
        "class_counts_train": _counts(ds.y_train, ds.num_classes),
        "class_counts_test": _counts(ds.y_test, ds.num_classes),
    }
    for key in META_KEYS:
        if meta.get(key) is not None:
            info[key] = meta[key]
    subset = _subset(meta, ds.n_train, ds.n_test)
    if subset is not None:
        info["subset"] = subset
    return info


def _subset(meta: dict[str, Any], n_train: int, n_test: int) -> dict[str, Any] | None:
    """The seeded subset a source drew (``n_train_available``, ``n_test_available``, ``seed``), or None
    when it kept every sample."""
    if meta.get("n_train_available", n_train) > n_train or meta.get("n_test_available", n_test) > n_test:
        return {"n_train_available": meta["n_train_available"], "n_test_available": meta["n_test_available"],
                "seed": meta["subset_seed"]}
    return None


def _effects(layout: str, input_shape: tuple[int, ...], num_classes: int) -> dict[str, str]:
    """{corruption name: what it changes on data of this layout and shape}, the paper's first."""
    from rethinkgen.data.corruptions import CORRUPTIONS, corruption_effect

    names = [n for n in PAPER_ORDER if n in CORRUPTIONS] + [n for n in CORRUPTIONS.names() if n not in PAPER_ORDER]
    return {name: corruption_effect(name, layout, input_shape, num_classes) for name in names}


def _moments(x: torch.Tensor, layout: str) -> list[dict[str, float]]:
    """Per channel (images, signals) or overall (vectors): min, max, mean, std of the inputs."""
    flat = x.reshape(x.shape[0], -1)[None] if layout == "vector" else x.reshape(x.shape[0], x.shape[1], -1)
    if layout != "vector":
        flat = flat.transpose(0, 1)  # (C, N, P)
    out = []
    for values in flat:
        v = values.reshape(-1).to(torch.float64)
        out.append({"min": float(v.min()), "max": float(v.max()), "mean": float(v.mean()),
                    "std": float(v.std(correction=0))})
    return out


def inspect_dataset(ds: Dataset) -> dict[str, Any]:
    """:func:`data_info` plus the value range of train and test inputs (per channel for images and
    signals), and ``effects``: {corruption name: what it changes on this data}."""
    info = data_info(ds)
    info["dtype"] = str(ds.x_train.dtype).replace("torch.", "")
    info["values_train"] = _moments(ds.x_train, ds.layout)
    info["values_test"] = _moments(ds.x_test, ds.layout) if ds.n_test else []
    info["effects"] = _effects(ds.layout, ds.input_shape, ds.num_classes)
    return info


def inspect_streamed(name: str, splits: Any, crop: int) -> dict[str, Any]:
    """The :func:`inspect_dataset` record of a dataset streamed from disk (``splits``: the source's index,
    e.g. :class:`~rethinkgen.data.sources.imagenet.ImagenetSplits`), from its file lists alone: no image is
    decoded, so there are no value ranges. ``crop``: the side of the network's input (the run's default)."""
    k = splits.num_classes
    shape = (3, int(crop), int(crop))
    classes = [f"{w} {n}".strip() for w, n in zip(splits.classes, splits.class_names, strict=True)]
    meta = splits.meta
    info: dict[str, Any] = {
        "dataset": name, "layout": "image", "input_shape": list(shape), "n_train": len(splits.train),
        "n_test": len(splits.test), "num_classes": k, "classes": classes, "path": meta.get("root"),
        "class_counts_train": np.bincount(splits.train.targets, minlength=k)[:k].tolist(),
        "class_counts_test": np.bincount(splits.test.targets[splits.test.targets >= 0], minlength=k)[:k].tolist(),
        "layout_found": f"{meta.get('layout')} layout", "dtype": "image files, decoded as they are streamed",
        "values_train": [], "values_test": [],
    }
    subset = _subset(meta, info["n_train"], info["n_test"])
    if subset is not None:
        info["subset"] = subset
    info["effects"] = _effects("image", shape, k)
    return info


def _shown(items: list[str], limit: int = 12) -> str:
    return ", ".join(items[:limit]) + (f", ... ({len(items)} in all)" if len(items) > limit else "")


def inspection_rows(info: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) rows of an :func:`inspect_dataset` record, for ``rethinkgen data inspect``."""
    shape = "(N, " + ", ".join(str(s) for s in info["input_shape"]) + ")"
    layout = f"{info['layout']} {shape}"
    if info.get("stored_shape"):
        layout += (f", stored as {info['layout_found']} {tuple(info['stored_shape'])} "
                   f"{info.get('stored_dtype', '')}".rstrip())
    elif info.get("layout_found"):
        layout += f", from {info['layout_found']}"
        if info.get("layout_reason"):
            layout += f": {info['layout_reason']}"
    rows = [("dataset", info["dataset"] + (f" ({info['path']})" if info.get("path") else "")),
            ("layout", layout)]
    if info.get("layout_reason"):
        rows.append(("layout decided", info["layout_reason"]))
    if info.get("scaling"):
        rows.append(("scaling", info["scaling"]))
    if info.get("conversion"):
        rows.append(("channels", info["conversion"]))
    test = f" ({info['test_split']})" if info.get("test_split") else ""
    sizes = f"{info['n_train']:,} train, {info['n_test']:,} test{test} ({info['dtype']})"
    if "subset" in info:
        sub = info["subset"]
        sizes += (f"; a seeded subset (seed {sub['seed']}) of {sub['n_train_available']:,} / "
                  f"{sub['n_test_available']:,}")
    rows.append(("samples", sizes))
    for split in ("train", "test"):
        moments = info.get(f"values_{split}") or []
        parts = [f"{'ch ' + str(i) + ': ' if len(moments) > 1 else ''}{m['min']:.4g}..{m['max']:.4g}, "
                 f"mean {m['mean']:.4f}, std {m['std']:.4f}" for i, m in enumerate(moments)]
        if parts:
            rows.append((f"values ({split})", "; ".join(parts)))
    classes = info.get("classes") or list(range(info["num_classes"]))
    counts_train, counts_test = info["class_counts_train"], info["class_counts_test"]
    described = [f"{i}={c!s} ({counts_train[i]:,}/{counts_test[i]:,})" if str(c) != str(i)
                 else f"{i} ({counts_train[i]:,}/{counts_test[i]:,})" for i, c in enumerate(classes)]
    rows.append((f"classes (K = {info['num_classes']})", _shown(described) + "  [train/test counts]"))
    if info.get("class_mapping"):
        rows.append(("label mapping", _shown([f"{k} -> {v}" for k, v in info["class_mapping"].items()])
                     + " (stored label -> class index)"))
    if info.get("official") is not None:
        rows.append(("official files", "yes (SHA-256 match)" if info["official"] else "no (other content)"))
    if info.get("cache"):
        rows.append(("cache", f"{info['cache']} ({'read' if info.get('from_cache') else 'written'})"))
    return rows
