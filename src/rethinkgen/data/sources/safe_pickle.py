"""Unpickling data files without running code: an allow-list of the numpy reconstructors they need.

A pickle is a program: every ``GLOBAL``/``STACK_GLOBAL`` opcode names a callable that ``REDUCE``
then calls, so loading an untrusted pickle with :func:`pickle.load` can run anything
(``os.system``, ``builtins.eval``). A CIFAR-10 batch, however saved, needs only numpy arrays, numpy
scalars, bytes, strings, numbers, lists and dicts. :class:`SafeUnpickler` resolves exactly the
globals those need, and refuses every other one *before it could be called*, naming it:

==============================================  ==============================================
global (numpy 1.x ``numpy.core``, 2.x ``numpy._core``)  written for
==============================================  ==============================================
``numpy.core.multiarray._reconstruct``          an array, protocols 2-4 (and 5, non-contiguous)
``numpy.ndarray``, ``numpy.dtype``              its class and dtype
``numpy.core.multiarray.scalar``                a numpy scalar (e.g. ``np.int64(3)`` labels)
``numpy.core.numeric._frombuffer``              a contiguous array, protocol 5
``_codecs.encode``                              ``bytes`` under protocol 2 in Python 3
==============================================  ==============================================

Each allowed callable is wrapped so that it only does the harmless thing it is there for: object
dtypes (whose "scalar" is any unpickled object) are refused, ``_codecs.encode`` only turns a ``str``
into latin-1 ``bytes`` (what Python 3 writes for ``bytes`` in protocol 2), ``_reconstruct`` only builds
plain ``ndarray``\\ s. Protocols 0-5 parse; ``encoding="bytes"`` reads Python 2 ``str`` as ``bytes``.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np

from rethinkgen.errors import UnsafeFileError

__all__ = ["SafeUnpickler", "allowed_globals", "safe_unpickle"]

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct as _np_reconstruct
    from numpy._core.multiarray import scalar as _np_scalar
    from numpy._core.numeric import _frombuffer as _np_frombuffer
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct as _np_reconstruct  # type: ignore[no-redef]
    from numpy.core.multiarray import scalar as _np_scalar  # type: ignore[no-redef]
    from numpy.core.numeric import _frombuffer as _np_frombuffer  # type: ignore[no-redef]

LATIN1 = ("latin1", "latin-1", "iso-8859-1", "iso8859-1")
BUFFERS = (bytes, bytearray, memoryview, pickle.PickleBuffer)


class _Refused(Exception):
    """Raised inside a wrapper; SafeUnpickler turns it into an UnsafeFileError naming the file."""


def _plain_dtype(dtype: Any, who: str) -> np.dtype:
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"{who} was given {type(dtype).__name__} where a numpy dtype belongs")
    if dtype.hasobject:
        raise _Refused(f"{who} was asked for an object dtype ({dtype}), whose elements are arbitrary "
                       "Python objects; data files hold numbers")
    return dtype


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not isinstance(spec, str | bytes):
        raise _Refused(f"numpy.dtype was given {type(spec).__name__}; a pickled dtype is named by a string")
    return _plain_dtype(np.dtype(spec.decode("latin1") if isinstance(spec, bytes) else spec, bool(align),
                                 bool(copy)), "numpy.dtype")


def _reconstruct(subtype: Any, shape: Any, dtype_char: Any) -> np.ndarray:
    if subtype is not np.ndarray:
        raise _Refused(f"numpy _reconstruct was asked for a {getattr(subtype, '__name__', subtype)!r}, not an "
                       "ndarray")
    return _np_reconstruct(np.ndarray, shape, dtype_char)


def _scalar(dtype: Any, data: Any = None) -> Any:
    _plain_dtype(dtype, "numpy scalar")
    if not isinstance(data, bytes):
        raise _Refused(f"numpy scalar was given {type(data).__name__} where its bytes belong")
    return _np_scalar(dtype, data)


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    _plain_dtype(dtype, "numpy _frombuffer")
    if not isinstance(buffer, BUFFERS):
        raise _Refused(f"numpy _frombuffer was given {type(buffer).__name__} where a buffer belongs")
    return _np_frombuffer(buffer, dtype, shape, order)


def _encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    if not isinstance(text, str) or not isinstance(encoding, str) or encoding.lower() not in LATIN1:
        raise _Refused(f"_codecs.encode is allowed only to turn a str into latin-1 bytes (how Python 3 pickles "
                       f"bytes in protocol 2), got ({type(text).__name__}, {encoding!r})")
    return text.encode("latin1")


def allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> the guarded callable the unpickler hands out for it."""
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): _dtype,
                                         ("_codecs", "encode"): _encode}
    for core in ("numpy.core", "numpy._core"):  # written by numpy 1.x / 2.x
        table[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        table[(f"{core}.multiarray", "scalar")] = _scalar
        table[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return table


_ALLOWED = allowed_globals()


class SafeUnpickler(pickle.Unpickler):
    """An unpickler that rebuilds numpy arrays and scalars, bytes, str, numbers, lists, dicts — nothing else.

    Any global outside :func:`allowed_globals` (``os.system``, ``builtins.eval``, ``numpy.load``, ...)
    raises :class:`UnsafeFileError` naming the file and the global, before anything is called; so does an
    allowed global used for something other than what it is allowed for (see the module docstring).
    """

    def __init__(self, file, path: Path | str, what: str = "a CIFAR-10 batch") -> None:
        super().__init__(file, encoding="bytes")
        self.path, self.what = path, what

    def find_class(self, module: str, name: str) -> Any:
        obj = _ALLOWED.get((module, name))
        if obj is None:
            raise UnsafeFileError(f"{self.path}: refusing to load the pickle: it references the callable "
                                  f"{module}.{name}, which {self.what} never needs (it could run code). "
                                  "Delete the file and fetch the official one.")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError(f"{self.path}: refusing to load the pickle: it uses persistent ids")


def safe_unpickle(path: Path | str, what: str = "a CIFAR-10 batch") -> Any:
    """Unpickle ``path`` with :class:`SafeUnpickler`; malformed files raise :class:`UnsafeFileError`."""
    try:
        with open(path, "rb") as f:
            return SafeUnpickler(f, path, what).load()
    except UnsafeFileError:
        raise
    except _Refused as e:
        raise UnsafeFileError(f"{path}: refusing to load the pickle: {e}. Delete the file and fetch the "
                              "official one.") from None
    except Exception as e:  # UnpicklingError, EOFError, ValueError, TypeError from malformed streams
        raise UnsafeFileError(f"{path}: not a valid pickle of {what} ({type(e).__name__}: {e}); "
                              "delete it and fetch the dataset again") from e
