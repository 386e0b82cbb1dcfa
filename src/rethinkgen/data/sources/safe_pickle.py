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
plain ``ndarray``\\ s. ``numpy.ndarray`` is only ever an *argument* (``_reconstruct``'s subtype): it is
handed out as a marker that cannot be called, because ``ndarray(shape, "O", buffer)`` reads the
file's bytes as object pointers (a crafted file crashes the process, or worse).

A pickle can also change an object after it was built: the ``BUILD`` opcode calls the object's
``__setstate__`` with any state. numpy honours a dtype state's flags, so ``BUILD`` on an allowed
``dtype("V8")`` could give it the flags of an object dtype after the check. The unpickler therefore
accepts ``BUILD`` only where numpy's own pickles use it, with the state they write: on a dtype, a
state that changes nothing but the byte order; on an array, a plain dtype with its bytes. What the
file holds is checked once more at the end: containers of numbers, strings, bytes, and arrays,
scalars and dtypes of plain (object-free) dtypes; anything else (a callable, say) is refused.
Protocols 0-5 parse; ``encoding="bytes"`` reads Python 2 ``str`` as ``bytes``.

This is the standard library's pure-Python unpickler (``pickle._Unpickler``, also what joblib
subclasses to intercept ``BUILD``): the C one offers no hook for ``BUILD``. A 10,000-image batch takes
well under a second either way.
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
ENDIANS = ("<", ">", "|", "=")
LEAVES = (bytes, bytearray, str, int, float, complex, bool, type(None))  # plain values a data file may hold


class _Refused(Exception):
    """Raised inside a wrapper; SafeUnpickler turns it into an UnsafeFileError naming the file."""


def _plain_dtype(dtype: Any, who: str) -> np.dtype:
    if not isinstance(dtype, np.dtype):
        raise _Refused(f"{who} was given {type(dtype).__name__} where a numpy dtype belongs")
    if dtype.hasobject:
        raise _Refused(f"{who} was asked for an object dtype ({dtype}), whose elements are arbitrary "
                       "Python objects; data files hold numbers")
    return dtype


def _named_dtype(spec: Any, who: str) -> np.dtype:
    if not isinstance(spec, str | bytes):
        raise _Refused(f"{who} was given {type(spec).__name__}; a pickled dtype is named by a string")
    try:
        dtype = np.dtype(spec.decode("latin1") if isinstance(spec, bytes) else spec)
    except (TypeError, ValueError) as e:
        raise _Refused(f"{who} was given {spec!r}, which names no numpy dtype ({e})") from None
    return _plain_dtype(dtype, who)


def _dtype(spec: Any, align: Any = False, copy: Any = False) -> np.dtype:
    if not all(isinstance(flag, bool | int) for flag in (align, copy)):
        raise _Refused("numpy.dtype was given flags that are not booleans")
    return _plain_dtype(np.dtype(_named_dtype(spec, "numpy.dtype"), bool(align), bool(copy)), "numpy.dtype")


class _NdarrayMarker:
    """What ``numpy.ndarray`` resolves to: numpy's pickles only pass it to ``_reconstruct`` (the subtype to
    build). Called, ``ndarray(shape, dtype, buffer)`` would read the file's bytes as object pointers when
    the dtype is ``object``, so it cannot be called."""

    def __call__(self, *args: Any, **kwargs: Any) -> None:
        raise _Refused("numpy.ndarray is called; numpy's own pickles never call it (an array comes from "
                       "_reconstruct or _frombuffer), and ndarray(shape, 'O', buffer) reads the file's bytes "
                       "as object pointers")

    def __repr__(self) -> str:
        return "numpy.ndarray (as an argument only)"


_NDARRAY = _NdarrayMarker()


def _reconstruct(subtype: Any, shape: Any, dtype_char: Any) -> np.ndarray:
    if subtype is not _NDARRAY and subtype is not np.ndarray:
        raise _Refused(f"numpy _reconstruct was asked for a {getattr(subtype, '__name__', subtype)!r}, not an "
                       "ndarray")
    if not (isinstance(shape, tuple) and all(isinstance(d, int) and d >= 0 for d in shape)):
        raise _Refused(f"numpy _reconstruct was given the shape {shape!r}; a shape is a tuple of sizes")
    _named_dtype(dtype_char, "numpy _reconstruct")
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
    """(module, name) -> the guarded callable (or, for ``numpy.ndarray``, the marker) the unpickler hands out."""
    table: dict[tuple[str, str], Any] = {("numpy", "ndarray"): _NDARRAY, ("numpy", "dtype"): _dtype,
                                         ("_codecs", "encode"): _encode}
    for core in ("numpy.core", "numpy._core"):  # written by numpy 1.x / 2.x
        table[(f"{core}.multiarray", "_reconstruct")] = _reconstruct
        table[(f"{core}.multiarray", "scalar")] = _scalar
        table[(f"{core}.numeric", "_frombuffer")] = _frombuffer
    return table


_ALLOWED = allowed_globals()


def _check_dtype_state(dtype: np.dtype, state: Any) -> None:
    """A dtype's pickled state may set its byte order, nothing else (numpy writes
    ``(3, endian, None, None, None, elsize, alignment, flags)`` for the plain dtypes data files use)."""
    if not (isinstance(state, tuple) and len(state) in (8, 9) and state[0] in (3, 4)):
        raise _Refused(f"a dtype's state is {state!r:.80}; numpy writes (3, endian, None, None, None, elsize, "
                       "alignment, flags)")
    _, endian, subarray, names, fields, elsize, alignment, flags, *metadata = state
    endian = endian.decode("latin1") if isinstance(endian, bytes) else endian
    if subarray is not None or names is not None or fields is not None or any(m is not None for m in metadata):
        raise _Refused(f"the state of dtype {dtype} would give it fields, a subarray or metadata; data files "
                       "hold plain numbers")
    if endian not in ENDIANS or flags != dtype.flags or elsize not in (-1, dtype.itemsize) \
            or alignment not in (-1, dtype.alignment):
        raise _Refused(f"the state of dtype {dtype} would change its flags or sizes ({state!r}; numpy writes flags "
                       f"{dtype.flags}): after the check that it holds no objects")


def _check_array_state(state: Any) -> None:
    """An array's pickled state: ((version,) shape, plain dtype, fortran flag, its bytes)."""
    if not (isinstance(state, tuple) and len(state) in (4, 5)):
        raise _Refused(f"an array's state is {type(state).__name__}; numpy writes (1, shape, dtype, fortran, bytes)")
    _plain_dtype(state[-3], "an array's state")
    if not isinstance(state[-1], BUFFERS):
        raise _Refused(f"an array's state holds {type(state[-1]).__name__} where its bytes belong (a list means "
                       "an object array)")


def check_plain(obj: Any) -> None:
    """Raise ``_Refused`` unless ``obj`` is made of dicts, lists, tuples and sets of plain values
    (numbers, strings, bytes) and of ndarrays, numpy scalars and dtypes without objects."""
    seen: set[int] = set()
    todo = [obj]
    while todo:
        item = todo.pop()
        if isinstance(item, LEAVES):
            continue
        if id(item) in seen:
            continue
        seen.add(id(item))
        if type(item) in (dict, list, tuple, set, frozenset):
            todo.extend([*item.keys(), *item.values()] if type(item) is dict else item)
        elif type(item) is np.ndarray or isinstance(item, np.generic):
            _plain_dtype(item.dtype, f"an {type(item).__name__}")
        elif isinstance(item, np.dtype):
            _plain_dtype(item, "a dtype")
        else:
            raise _Refused(f"it holds a {type(item).__name__} ({item!r}); a data file holds numbers, strings "
                           "and arrays, never callables")


class SafeUnpickler(pickle._Unpickler):
    """An unpickler that rebuilds numpy arrays and scalars, bytes, str, numbers, lists, dicts — nothing else.

    Any global outside :func:`allowed_globals` (``os.system``, ``builtins.eval``, ``numpy.load``, ...)
    raises :class:`UnsafeFileError` naming the file and the global, before anything is called; so does an
    allowed global used for something other than what it is allowed for, a ``BUILD`` other than numpy's
    own, and a result holding anything but plain data (see the module docstring).
    """

    dispatch = dict(pickle._Unpickler.dispatch)

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

    def load_build(self) -> None:
        """BUILD: ``stack[-1].__setstate__(state)``, only for a dtype or an array with numpy's own states."""
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.dtype):
            _check_dtype_state(inst, state)
        elif type(inst) is np.ndarray:
            _check_array_state(state)
        else:
            raise _Refused(f"it sets the state of a {type(inst).__name__}; numpy's pickles only set the state "
                           "of dtypes and arrays")
        inst.__setstate__(state)

    dispatch[pickle.BUILD[0]] = load_build

    def load_ext(self) -> None:
        """EXT1/2/4 name a callable by a number in copyreg's process-wide registry, whose cache would hand
        out what another unpickler resolved (and keep what this one did); data files never use them."""
        raise _Refused("it names a callable through copyreg's extension registry (EXT opcodes)")

    for _op in (pickle.EXT1, pickle.EXT2, pickle.EXT4):
        dispatch[_op[0]] = load_ext
    del _op

    def load(self) -> Any:
        obj = super().load()
        check_plain(obj)
        return obj


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
        why = "it ends early: truncated" if isinstance(e, EOFError) else f"{type(e).__name__}: {e}"
        raise UnsafeFileError(f"{path}: not a valid pickle of {what} ({why}); "
                              "delete it and fetch the dataset again") from e
