"""Class labels as users store them -> class indices 0..K-1, with the encoding recorded.

A randomization test draws random labels uniformly from the K classes (paper §2.1), so K must be the
number of classes the data really has. Taking K = largest label + 1 silently invents classes for labels
stored as 1 and 2 (K = 3: a third of the random labels would name a class that never occurs). So:

- the classes are the distinct labels of the **training** set, sorted (integers, or strings such as
  ``"cat"``); an encoding other than 0..K-1 (1/2, -1/+1, 3/7/9, names) is mapped to 0..K-1 in sorted
  order, the mapping recorded and said once;
- or, with an explicit ``num_classes`` K, the labels are taken as class indices 0..K-1 as they are;
- refused, with the fix: test labels that no training sample has, a single class, float labels that
  are not integers, one-hot or other 2-D label arrays, NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from rethinkgen.data.sources.messages import notice, option
from rethinkgen.errors import ConfigError

__all__ = ["ClassEncoding", "encode_labels", "label_vector"]

SHOWN = 6  # label values quoted in a message before "..."


@dataclass(frozen=True)
class ClassEncoding:
    """What class index k stands for: ``classes[k]`` is the label value (or name) stored in the file."""

    classes: tuple[Any, ...]  # stored value of each class, index = class id
    mapped: bool  # True when the stored values are not already 0..K-1
    given_num_classes: bool  # K came from the num_classes option

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def as_meta(self) -> dict[str, Any]:
        """``classes`` (stored values) and ``class_mapping`` ({stored value as text: index} or None)."""
        return {"classes": list(self.classes),
                "class_mapping": {str(c): i for i, c in enumerate(self.classes)} if self.mapped else None}


def _shown(values: Any) -> str:
    values = [_python(v) for v in values]
    text = ", ".join(repr(v) if isinstance(v, str) else str(v) for v in values[:SHOWN])  # 'dog ' vs 'dog'
    return text + (f", ... ({len(values)} in all)" if len(values) > SHOWN else "")


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def label_vector(y: np.ndarray, where: str) -> np.ndarray:
    """``y`` as a 1-D array of int64 or str labels; (N, 1) columns are accepted.

    Raises ConfigError for 2-D arrays (one-hot: the ``argmax`` hint), non-integer floats (naming the
    first one), NaN, and dtypes that cannot be class labels.
    """
    if not y.dtype.isnative:  # ">u8" must compare equal to uint64 below
        y = y.astype(y.dtype.newbyteorder("="))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = "; for one-hot or probability rows store y.argmax(1)" if y.ndim == 2 else ""
        raise ConfigError(f"{where} must be 1-D class labels (N,), found shape {y.shape}{hint}")
    if y.dtype == np.bool_:
        return y.astype(np.int64)
    if y.dtype.kind in "iu":
        if y.dtype == np.uint64 and y.size and y.max() > np.iinfo(np.int64).max:
            raise ConfigError(f"{where}: labels up to {y.max()} do not fit int64")
        return y.astype(np.int64)
    if y.dtype.kind == "f":
        bad = ~np.isfinite(y) | (y != np.round(y))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ConfigError(f"{where} holds float labels that are not whole numbers ({y[i].item()!r} at index {i}, "
                              f"{int(bad.sum())} in all): labels must be classes; store the class of each "
                              "sample (e.g. y.round().astype(int) if these are rounding errors, y.argmax(1) of "
                              "class probabilities)")
        if y.size and np.abs(y).max() >= 2.0**63:  # cast, they would all become -2**63
            raise ConfigError(f"{where}: labels up to {np.abs(y).max().item()!r} do not fit int64")
        return y.astype(np.int64)
    if y.dtype.kind in "US":
        return y.astype(str)
    raise ConfigError(f"{where} must hold integer (or string) class labels, found dtype {y.dtype}")


def encode_labels(y: np.ndarray, y_test: np.ndarray, *, num_classes: Any = None,
                  where: str = "labels", train_key: str = "y", test_key: str = "y_test"
                  ) -> tuple[np.ndarray, np.ndarray, ClassEncoding]:
    """Map training and test labels to class indices 0..K-1 (int64) by the training set's classes.

    Parameters
    ----------
    y, y_test : the stored labels, (N,) and (M,) (or (N, 1)); ints, whole floats, bools or strings.
    num_classes : None (the classes are those present in ``y``) or K (labels are indices 0..K-1).
    where : the file or source named in messages; ``train_key``/``test_key`` name the two arrays.

    Returns
    -------
    tuple
        (y int64 (N,), y_test int64 (M,), the :class:`ClassEncoding`). A mapping other than the identity
        is announced once with :func:`~rethinkgen.data.sources.messages.notice`.

    Raises
    ------
    ConfigError
        naming the fix (see the module docstring).
    """
    y = label_vector(np.asarray(y), f"{where}: {train_key}")
    y_test = label_vector(np.asarray(y_test), f"{where}: {test_key}")
    if y.size == 0:
        raise ConfigError(f"{where}: {train_key} is empty: there is no training set")
    if (y.dtype.kind == "U") != (y_test.dtype.kind == "U") and y_test.size:
        raise ConfigError(f"{where}: {train_key} holds {'strings' if y.dtype.kind == 'U' else 'numbers'} but "
                          f"{test_key} holds {'strings' if y_test.dtype.kind == 'U' else 'numbers'}; store both "
                          "the same way")
    if num_classes is not None:
        return _given(y, y_test, num_classes, where, train_key, test_key)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ConfigError(
            f"{where}: all {len(y)} labels in {train_key} are {_python(classes[0])!r}: a classification set needs at "
            f"least 2 classes. Check that {train_key} is the label array; if the other classes exist but this "
            f"training set lacks them, give their number with {option('num_classes', 'K', placeholder=True)} "
            "(labels are then class indices 0..K-1)")
    unseen = np.setdiff1d(np.unique(y_test), classes)
    if unseen.size:
        count = int(np.isin(y_test, unseen).sum())
        hint = f", or set {option('num_classes', 'K', placeholder=True)} if the labels are class indices 0..K-1" \
            if y.dtype.kind != "U" else ""
        raise ConfigError(
            f"{where}: {test_key} holds label(s) {_shown(unseen)} ({count} test samples) that no training sample has "
            f"(training classes: {_shown(classes)}); a class never seen in training cannot be learned, so test "
            f"accuracy would be capped for no reason. Remove those test samples{hint}")
    identity = y.dtype.kind != "U" and np.array_equal(classes, np.arange(len(classes)))
    encoding = ClassEncoding(tuple(_python(c) for c in classes), mapped=not identity, given_num_classes=False)
    if identity:
        return y, y_test.astype(np.int64), encoding
    y_idx = np.searchsorted(classes, y).astype(np.int64)
    y_test_idx = np.searchsorted(classes, y_test).astype(np.int64)
    pairs = ", ".join(f"{_python(c)!r}->{i}" for i, c in enumerate(classes[:SHOWN]))
    more = f", ... ({len(classes)} classes)" if len(classes) > SHOWN else ""
    notice(f"{where}: the training labels ({len(classes)} classes) are not the class indices 0..{len(classes) - 1}; "
           f"mapped in sorted order: {pairs}{more} (recorded as class_mapping in the run's summary)")
    return y_idx, y_test_idx, encoding


def _given(y: np.ndarray, y_test: np.ndarray, num_classes: Any, where: str, train_key: str,
           test_key: str) -> tuple[np.ndarray, np.ndarray, ClassEncoding]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, int | np.integer) or num_classes < 2:
        raise ConfigError(f"{where}: num_classes must be an int >= 2 (or unset: the classes present in "
                          f"{train_key}), got {num_classes!r}")
    k = int(num_classes)
    if y.dtype.kind == "U":
        raise ConfigError(f"{where}: num_classes={k} takes labels as class indices 0..{k - 1}, but {train_key} holds "
                          "strings; drop num_classes (the classes are then the distinct names)")
    for key, labels in ((train_key, y), (test_key, y_test)):
        outside = labels[(labels < 0) | (labels >= k)]
        if outside.size:
            raise ConfigError(f"{where}: num_classes={k} makes the labels class indices 0..{k - 1}, but {key} holds "
                              f"{_shown(np.unique(outside))}; raise num_classes or drop it (the classes are then "
                              f"the labels present in {train_key}, mapped to 0..K-1)")
    absent = np.setdiff1d(np.arange(k), y)
    if absent.size:
        notice(f"{where}: num_classes={k} but {train_key} has no sample of class(es) {_shown(absent)}; random "
               f"labels are drawn from all {k} classes")
    return y, y_test, ClassEncoding(tuple(range(k)), mapped=False, given_num_classes=True)
