"""CIFAR-10 from any Python: the official Python 2 pickles, Python 3 re-saves (protocols 2-5), the
allow-list unpickler against hostile files, the row-count message, and `data fetch` verification."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from data_files import CASES, LABEL_NAMES, py2, py2_pickle, py2_str, quiet, write_cifar
from rethinkgen.data.sources import cifar10, fetch_dataset, interface, load_dataset
from rethinkgen.data.sources.download import file_digest
from rethinkgen.data.sources.safe_pickle import allowed_globals, safe_unpickle
from rethinkgen.errors import DatasetNotFoundError, UnsafeFileError

CASE_PROTOCOL2 = CASES / "cifar_benign_pickle" / "a_py3_protocol2_example"
needs_case = pytest.mark.skipif(not CASE_PROTOCOL2.is_dir(), reason=f"case input not found at {CASE_PROTOCOL2}")


def test_py2_pickle_writer_matches_the_standard_unpickler():
    # our hand-written py2 stream is what pickle itself understands (sanity of the fixture)
    arr = np.arange(6 * 3072, dtype=np.uint8).reshape(6, 3072)
    obj = pickle.loads(py2_pickle({b"data": arr, b"labels": [1, 2, 300, 70000]}), encoding="bytes")
    np.testing.assert_array_equal(obj[b"data"], arr)
    assert obj[b"labels"] == [1, 2, 300, 70000]


def test_cifar10_loads_py2_batches(tmp_path):
    x_train, y_train, x_test, y_test = write_cifar(tmp_path)
    ds = load_dataset("cifar10", tmp_path, strict=False)
    assert ds.layout == "image" and ds.num_classes == 10
    assert ds.x_train.shape == (100, 3, 32, 32) and ds.x_test.shape == (20, 3, 32, 32)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    # row layout: 1024 red, 1024 green, 1024 blue values, each plane row-major
    np.testing.assert_allclose(ds.x_train[7, 1, 2, 5].item(), x_train[7, 1024 + 2 * 32 + 5] / 255, rtol=1e-6)
    np.testing.assert_array_equal(ds.x_train.numpy() * 255, x_train.reshape(-1, 3, 32, 32).astype(np.float32))
    np.testing.assert_array_equal(ds.y_train.numpy(), y_train)
    np.testing.assert_array_equal(ds.y_test.numpy(), y_test)
    assert 0.0 <= ds.x_train.min() and ds.x_train.max() <= 1.0
    assert ds.meta["label_names"][0] == "airplane" and ds.meta["classes"] == list(LABEL_NAMES)
    # data_dir may be the batches folder itself
    same = load_dataset("cifar10", tmp_path / cifar10.FOLDER, strict=False)
    assert torch.equal(same.x_test, ds.x_test)


def test_row_count_message_quotes_batches_meta_and_names_strict(tmp_path):
    write_cifar(tmp_path, rows=4)
    with pytest.raises(UnsafeFileError) as err:
        load_dataset("cifar10", tmp_path)
    msg = str(err.value)
    assert "10,000 rows" in msg and "data_batch_1 4" in msg and "test_batch 4" in msg
    assert "batches.meta says num_cases_per_batch = 4" in msg and "strict=False" in msg
    with interface("cli"), pytest.raises(UnsafeFileError, match="--data-option strict=false"):
        load_dataset("cifar10", tmp_path)


def test_rows_that_disagree_with_batches_meta_are_refused_without_strict(tmp_path):
    write_cifar(tmp_path, rows=4)
    path = tmp_path / cifar10.FOLDER / "data_batch_5"
    path.write_bytes(py2_pickle({b"data": np.zeros((3, 3072), np.uint8), b"labels": [0] * 3}))
    with pytest.raises(UnsafeFileError, match=r"num_cases_per_batch = 4, but .*data_batch_5 3"):
        load_dataset("cifar10", tmp_path, strict=False)


@needs_case
def test_case_python3_protocol2_resave_loads():
    # shared/cases/cifar_benign_pickle: batches re-saved by Python 3 with protocol 2 (bytes as _codecs.encode)
    ds = load_dataset("cifar10", CASE_PROTOCOL2, strict=False)
    assert (ds.n_train, ds.n_test, ds.num_classes) == (500, 100, 10)
    assert ds.meta["classes"] == list(LABEL_NAMES)
    assert 0.0 <= float(ds.x_train.min()) and float(ds.x_train.max()) <= 1.0 and ds.x_train.std() > 0.1
    assert torch.bincount(ds.y_train, minlength=10).min() > 0
    with pytest.raises(UnsafeFileError, match="num_cases_per_batch = 100.*strict=False"):
        load_dataset("cifar10", CASE_PROTOCOL2)


def _resave(folder: Path, protocol: int, keys: str, labels: str, rows: int = 6, seed: int = 1) -> dict:
    """Write every batch the way a Python 3 user would re-save it; returns {batch name: (data, labels)}."""
    g = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    key = (lambda k: k) if keys == "str" else (lambda k: k.encode())
    written = {}
    for name in (*cifar10.TRAIN_BATCHES, cifar10.TEST_BATCH):
        data = g.integers(0, 256, (rows, 3072), dtype=np.uint8)
        y = g.integers(0, 10, rows)
        stored = {"list": [int(v) for v in y], "array": y.astype(np.int64), "array_u8": y.astype(np.uint8),
                  "scalars": list(y.astype(np.int64)), "tuple": tuple(int(v) for v in y),
                  "column": y.astype(np.int64)[:, None]}[labels]
        (folder / name).write_bytes(pickle.dumps({key("data"): data, key("labels"): stored}, protocol=protocol))
        written[name] = (data, y)
    names = np.array(LABEL_NAMES) if labels == "column" else list(LABEL_NAMES)  # np.array(label_names) too
    meta = {key("num_cases_per_batch"): rows, key("label_names"): names, key("num_vis"): 3072}
    (folder / cifar10.META).write_bytes(pickle.dumps(meta, protocol=protocol))
    return written


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
@pytest.mark.parametrize("keys, labels", [("bytes", "list"), ("str", "array"), ("str", "scalars"),
                                          ("bytes", "array_u8"), ("str", "tuple"), ("str", "column")])
def test_python3_resaves_load_with_every_protocol(tmp_path, protocol, keys, labels):
    written = _resave(tmp_path / "b", protocol, keys, labels)
    ds = load_dataset("cifar10", tmp_path / "b", strict=False)
    data, y = written["data_batch_3"]
    np.testing.assert_array_equal(ds.x_train[12:18].numpy() * 255, data.reshape(-1, 3, 32, 32).astype(np.float32))
    np.testing.assert_array_equal(ds.y_train[12:18].numpy(), y)
    np.testing.assert_array_equal(ds.y_test.numpy(), written["test_batch"][1])


def test_labels_must_be_integers(tmp_path):
    _resave(tmp_path / "b", 4, "str", "list")
    path = tmp_path / "b" / "data_batch_1"
    path.write_bytes(pickle.dumps({"data": np.zeros((6, 3072), np.uint8), "labels": np.zeros(6, np.float32)}))
    with pytest.raises(UnsafeFileError, match="list .*of integers, found an array of float32"):
        load_dataset("cifar10", tmp_path / "b", strict=False)


# ---------------------------------------------------------------------------------------------------
# hostile pickles: refused before anything runs, naming the callable
# ---------------------------------------------------------------------------------------------------

class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("variant", ["whole", "inside_dict", "eval"])
def test_malicious_pickle_refused_without_running(tmp_path, variant):
    write_cifar(tmp_path, rows=4)
    marker = tmp_path / "pwned"
    path = tmp_path / cifar10.FOLDER / "data_batch_3"
    if variant == "whole":
        payload = pickle.dumps(_Evil(marker), protocol=2)
    elif variant == "inside_dict":  # a valid-looking batch with the payload as one more entry
        evil = b"cposix\nsystem\n" + py2_str(f"touch {marker}".encode()) + b"\x85R"
        payload = (b"\x80\x02}(" + py2(b"data") + py2(np.zeros((4, 3072), np.uint8)) + py2(b"labels")
                   + py2([0] * 4) + py2(b"x") + evil + b"u.")
    else:
        payload = b"\x80\x02cbuiltins\neval\n" + py2_str(f"open({str(marker)!r}, 'w')".encode()) + b"\x85R."
    path.write_bytes(payload)
    with pytest.raises(UnsafeFileError) as err:
        load_dataset("cifar10", tmp_path, strict=False)
    assert str(path) in str(err.value)
    assert ("system" in str(err.value)) if variant != "eval" else ("builtins.eval" in str(err.value))
    assert not marker.exists()
    if variant == "whole":  # the standard unpickler really would have run it (the test can fail)
        pickle.loads(payload)
        assert marker.exists()


ALLOWED = sorted(allowed_globals())


def _smuggle(allowed: tuple[str, str], forbidden: tuple[str, str], marker: Path) -> bytes:
    """allowed(forbidden("touch marker")): an allow-listed callable handed the result of a forbidden one."""
    glob = lambda mod, name: b"c" + mod.encode() + b"\n" + name.encode() + b"\n"  # noqa: E731
    return (b"\x80\x02" + glob(*allowed) + glob(*forbidden) + py2_str(f"touch {marker}".encode())
            + b"\x85R\x85R.")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # plain pickle resolving numpy.core.* below
@pytest.mark.parametrize("allowed", ALLOWED, ids=[".".join(a) for a in ALLOWED])
def test_every_allowed_callable_refuses_a_smuggled_one(tmp_path, allowed):
    marker = tmp_path / "pwned"
    payload = _smuggle(allowed, ("os", "system"), marker)
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafeFileError, match=r"callable os\.system"):
        safe_unpickle(path)
    assert not marker.exists()
    try:  # the plain unpickler runs the payload (and may then fail on what it returned)
        pickle.loads(payload)
    except Exception:  # noqa: BLE001
        pass
    assert marker.exists()  # so the payload is live: the refusal is what kept it from running


def _call(glob: tuple[str, str], args: bytes) -> bytes:
    """PROTO 2, GLOBAL glob, MARK, the args, TUPLE, REDUCE, STOP: one call of ``glob``."""
    return b"\x80\x02c" + glob[0].encode() + b"\n" + glob[1].encode() + b"\n(" + args + b"tR."


OBJECT_DTYPE = b"cnumpy\ndtype\n" + py2_str(b"O8") + b"K\x00K\x01\x87R"


@pytest.mark.parametrize("case, match", [
    ("codecs_other_codec", "latin-1 bytes"),  # _codecs.encode used as a general codec machine
    ("dtype_object", "object dtype"),  # arrays of arbitrary objects
    ("scalar_object", "object dtype"),  # scalar(dtype('O'), obj) would hand back any object
    ("scalar_not_bytes", "where its bytes belong"),
    ("frombuffer_object", "object dtype"),
    ("reconstruct_other_class", "not an ndarray"),
])
def test_allowed_callables_only_do_what_they_are_allowed_for(tmp_path, case, match):
    m1, n1 = "numpy._core.multiarray", "numpy._core.numeric"
    payload = {
        "codecs_other_codec": _call(("_codecs", "encode"), py2_str(b"x") + py2_str(b"rot13")),
        "dtype_object": b"\x80\x02" + OBJECT_DTYPE + b".",
        "scalar_object": _call((m1, "scalar"), OBJECT_DTYPE + py2_str(b"abc")),
        "scalar_not_bytes": _call((m1, "scalar"), b"cnumpy\ndtype\n" + py2_str(b"i8") + b"K\x00K\x01\x87R"
                                  + b"]"),
        "frombuffer_object": _call((n1, "_frombuffer"), py2_str(b"abcdefgh") + OBJECT_DTYPE + b"K\x01\x85"
                                   + py2_str(b"C")),
        "reconstruct_other_class": _call((m1, "_reconstruct"), b"cnumpy\ndtype\nK\x00\x85" + py2_str(b"b")),
    }[case]
    path = tmp_path / "odd.pkl"
    path.write_bytes(payload)
    with pytest.raises(UnsafeFileError, match=match):
        safe_unpickle(path)


# Objects made by allowed callables and then misused: numpy.ndarray called with an object dtype over the
# file's bytes (an array of raw pointers: a crafted batches.meta crashed `data fetch`), and BUILD opcodes
# that change a dtype after its check (numpy honours the flags of a dtype's state).
_NP = "numpy._core.multiarray"


def _glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _i(v: int) -> bytes:
    return b"J" + v.to_bytes(4, "little", signed=True)


def _b(data: bytes) -> bytes:  # BINBYTES (protocol 3)
    return b"B" + len(data).to_bytes(4, "little") + data


def _dtype_of(spec: bytes) -> bytes:
    return _glob("numpy", "dtype") + b"(" + py2_str(spec) + _i(0) + _i(1) + b"tR"


def _dtype_state(flags: int, fields: bytes = b"NN") -> bytes:  # BUILD on the dtype on the stack
    return b"(" + _i(3) + py2_str(b"|") + b"N" + fields + _i(8) + _i(1) + _i(flags) + b"tb"


OBJECT_FLAGS = 1  # NPY_ITEM_REFCOUNT: "holds object references"
HOSTILE_BUILDS = {
    # ndarray((1,), "O", buffer=8 zero bytes): elements are the file's bytes read as PyObject pointers
    "ndarray_object_over_bytes": _glob("numpy", "ndarray") + b"((" + _i(1) + b"t" + py2_str(b"O")
    + _b(bytes(8)) + b"tR",
    # ndarray((2,), numpy.ndarray): numpy.ndarray as a dtype means object
    "ndarray_called_with_itself": _glob("numpy", "ndarray") + b"((" + _i(2) + b"t" + _glob("numpy", "ndarray")
    + b"tR",
    "reconstruct_object_dtype": _glob(_NP, "_reconstruct") + b"(" + _glob("numpy", "ndarray") + b"(" + _i(0)
    + b"t" + py2_str(b"O") + b"tR",
    # dtype("V8") passes the check, then BUILD gives it object flags; an array is built with it
    "dtype_given_object_flags": _glob(_NP, "_reconstruct") + b"(" + _glob("numpy", "ndarray") + b"(" + _i(0)
    + b"t" + _b(b"b") + b"tR(" + _i(1) + b"(" + _i(1) + b"t" + _dtype_of(b"V8") + _dtype_state(OBJECT_FLAGS)
    + b"\x89" + _b(bytes(8)) + b"tb",
    # an array made by _frombuffer with a checked dtype, whose flags BUILD changes afterwards (memo: q/h)
    "dtype_changed_after_use": b"]" + _glob("numpy._core.numeric", "_frombuffer") + b"(" + _b(bytes(8))
    + _dtype_of(b"V8") + b"q\x01(" + _i(1) + b"t" + py2_str(b"C") + b"tRah\x01" + _dtype_state(OBJECT_FLAGS)
    + b"0",
    "dtype_given_fields": _dtype_of(b"V8") + _dtype_state(0, b"(" + py2_str(b"a") + b"t}" + py2_str(b"a") + b"("
                                                           + _dtype_of(b"i8") + _i(0) + b"ts"),
    "build_on_a_list": b"]" + b"}b",  # BUILD on anything but a dtype or an array
    "a_callable_as_data": b"]" + _glob("numpy", "dtype") + b"a",  # GLOBAL without a call: np.dtype in a list
}


def _has_objects(obj) -> bool:
    items = obj if isinstance(obj, list) else [obj]
    return any(isinstance(o, np.ndarray | np.dtype) and (o.dtype if isinstance(o, np.ndarray) else o).hasobject
               or callable(o) for o in items)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@pytest.mark.parametrize("case", sorted(HOSTILE_BUILDS))
def test_allowed_callables_cannot_build_objects(tmp_path, case):
    payload = b"\x80\x03" + HOSTILE_BUILDS[case] + b"."
    path = tmp_path / "batches.meta"
    path.write_bytes(payload)
    with pytest.raises(UnsafeFileError, match="refusing to load the pickle"):
        safe_unpickle(path)
    if case == "build_on_a_list":
        return
    built = pickle.loads(payload)  # plain pickle builds it: the payload is live
    assert built.fields is not None if case == "dtype_given_fields" else _has_objects(built)


def test_callables_named_through_copyregs_extension_registry_are_refused(tmp_path):
    # EXT1 names a global by a number registered with copyreg.add_extension; its cache is process-wide, so
    # a global another unpickler resolved before was handed out without asking find_class
    import copyreg

    marker = tmp_path / "pwned"
    code = 0xF0
    payload = b"\x80\x02\x82" + bytes([code]) + py2_str(f"touch {marker}".encode()) + b"\x85R."
    path = tmp_path / "evil.pkl"
    path.write_bytes(payload)
    copyreg.add_extension("os", "system", code)
    try:
        pickle.loads(b"\x80\x02\x82" + bytes([code]) + b".")  # someone resolves it once: now it is cached
        with pytest.raises(UnsafeFileError, match="extension registry"):
            safe_unpickle(path)
    finally:
        copyreg.remove_extension("os", "system", code)
    assert not marker.exists()


def test_a_batches_meta_of_raw_pointers_is_refused_in_a_fresh_process(tmp_path):
    # Before the fix this file crashed the process (SIGSEGV): read_meta printed a name that was an object
    # array over the bytes 0x41..., dereferenced as a pointer. A subprocess keeps a regression from
    # taking the test session down.
    import subprocess
    import sys

    bogus = _glob("numpy", "ndarray") + b"((" + _i(1) + b"t" + py2_str(b"O") + _b(b"A" * 8) + b"tR"
    path = tmp_path / "batches.meta"
    path.write_bytes(b"\x80\x03}(" + py2_str(b"label_names") + b"](" + bogus + py2_str(b"b") * 9 + b"e"
                     + py2_str(b"num_vis") + _i(3072) + b"u.")
    code = ("import sys; from rethinkgen.data.sources.cifar10 import read_meta\n"
            "from rethinkgen.errors import UnsafeFileError\n"
            "try:\n    read_meta(sys.argv[1])\nexcept UnsafeFileError as e:\n    print('refused:', e)\n")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert out.returncode == 0, (out.returncode, out.stderr[-2000:])
    assert "refused:" in out.stdout and "numpy.ndarray is called" in out.stdout


@pytest.mark.parametrize("damage", ["truncated", "bad_label", "columns", "labels_short", "not_a_dict"])
def test_damaged_batches(tmp_path, damage):
    write_cifar(tmp_path, rows=4)
    path = tmp_path / cifar10.FOLDER / "test_batch"
    data = np.zeros((4, 3072), np.uint8)
    payload = {
        "truncated": path.read_bytes()[:-100],
        "bad_label": py2_pickle({b"data": data, b"labels": [0, 1, 10, 2]}),
        "columns": py2_pickle({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}),
        "labels_short": py2_pickle({b"data": data, b"labels": [0] * 3}),
        "not_a_dict": py2_pickle([1, 2, 3]),
    }[damage]
    path.write_bytes(payload)
    with pytest.raises(UnsafeFileError, match="test_batch.*truncated" if damage == "truncated" else "test_batch"):
        load_dataset("cifar10", tmp_path, strict=False)


def test_missing_names_paths_and_fetch_command(tmp_path):
    with pytest.raises(DatasetNotFoundError) as err:
        load_dataset("cifar10", tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and str(tmp_path / "nowhere" / cifar10.FOLDER) in msg
    assert f"rethinkgen data fetch cifar10 --data-dir {tmp_path / 'nowhere'}" in msg
    write_cifar(tmp_path, rows=4)
    (tmp_path / cifar10.FOLDER / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match="lacks data_batch_4"):
        load_dataset("cifar10", tmp_path)


# ---------------------------------------------------------------------------------------------------
# fetch: verified before "ready"
# ---------------------------------------------------------------------------------------------------

def _make_tarball(src_root: Path, dest: Path) -> str:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src_root / cifar10.FOLDER, arcname=cifar10.FOLDER)
    return file_digest(dest, "md5")


def test_fetch_from_file_url_verifies_and_extracts(tmp_path):
    src = tmp_path / "src"
    _, y_train, _, _ = write_cifar(src, rows=4)
    tarball = tmp_path / "mirror" / cifar10.TARBALL
    tarball.parent.mkdir()
    md5 = _make_tarball(src, tarball)
    data_dir = tmp_path / "data"
    urls = ["file:///nonexistent/cifar-10-python.tar.gz", tarball.as_uri()]  # first mirror fails
    folder = cifar10.fetch(data_dir, urls=urls, md5=md5, log=quiet)
    assert folder == data_dir / cifar10.FOLDER
    np.testing.assert_array_equal(load_dataset("cifar10", data_dir, strict=False).y_train.numpy(), y_train)
    assert sorted(p.name for p in data_dir.iterdir()) == [cifar10.FOLDER, cifar10.TARBALL]  # no temp left
    messages = []  # again: what is there is verified (not the official files: read with the safe loader)
    assert cifar10.fetch(data_dir, urls=[], md5=md5, log=messages.append) == folder
    text = "\n".join(messages)
    assert "not the official files" in text and "read in full with the safe loader" in text
    assert "20 training and 4 test images" in text and "strict=False" in text and messages[-1].endswith("ready in "
                                                                                                       f"{folder}")


def test_fetch_of_an_existing_copy_refuses_a_hostile_file(tmp_path):
    write_cifar(tmp_path, rows=4)
    marker = tmp_path / "pwned"
    (tmp_path / cifar10.FOLDER / "data_batch_2").write_bytes(pickle.dumps(_Evil(marker), protocol=4))
    messages = []
    with pytest.raises(UnsafeFileError, match="os.system|posix.system"):
        fetch_dataset("cifar10", tmp_path, log=messages.append)
    assert not marker.exists() and not any("ready" in m for m in messages)


def test_fetch_recognises_official_files_by_md5(tmp_path, monkeypatch):
    write_cifar(tmp_path, rows=4)
    folder = tmp_path / cifar10.FOLDER
    monkeypatch.setattr(cifar10, "FILE_MD5", {n: file_digest(folder / n, "md5") for n in cifar10.FILE_MD5})
    monkeypatch.setattr(cifar10, "load", lambda *a, **k: pytest.fail("official files need no reading"))
    messages = []
    assert fetch_dataset("cifar10", folder, log=messages.append) == folder  # data_dir = the batches folder
    assert "match the official MD5 sums" in messages[0] and "ready" in messages[-1]


def test_fetch_reuses_a_local_tarball_offline(tmp_path):
    src = tmp_path / "src"
    write_cifar(src, rows=4)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    md5 = _make_tarball(src, data_dir / cifar10.TARBALL)
    assert cifar10.fetch(data_dir, urls=[], md5=md5, log=quiet).is_dir()


def test_fetch_refuses_wrong_checksum(tmp_path):
    src = tmp_path / "src"
    write_cifar(src, rows=4)
    tarball = tmp_path / cifar10.TARBALL
    _make_tarball(src, tarball)
    data_dir = tmp_path / "data"
    with pytest.raises(UnsafeFileError, match="md5"):
        cifar10.fetch(data_dir, urls=[tarball.as_uri()], log=quiet)  # the official md5: cannot match
    assert list(data_dir.iterdir()) == []  # neither the download nor its temp file remain


def test_fetch_refuses_an_archive_without_the_batches(tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    tarball = data_dir / cifar10.TARBALL
    with tarfile.open(tarball, "w:gz") as tar:
        info = tarfile.TarInfo("readme.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    with pytest.raises(UnsafeFileError, match="lacks cifar-10-batches-py"):
        cifar10.fetch(data_dir, urls=[], md5=file_digest(tarball, "md5"), log=quiet)
    assert sorted(p.name for p in data_dir.iterdir()) == [cifar10.TARBALL]  # temp folder removed
