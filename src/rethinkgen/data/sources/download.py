"""Downloading, checksum verification and safe extraction of dataset files.

Only the standard library (``urllib``, ``hashlib``, ``tarfile``): fetching a dataset needs no extra
dependency. Every write goes to a temporary file in the destination folder and is renamed into place
only after its checksum matched, so an interrupted or corrupted download never leaves a file that
looks complete.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from rethinkgen.errors import DatasetNotFoundError, UnsafeFileError

Log = Callable[[str], None]
Verifier = Callable[[Path], None]  # raises UnsafeFileError when the file is not the expected one

CHUNK = 1 << 20  # bytes read per step when hashing or copying
ALLOWED_SCHEMES = ("https", "http", "file")


def stderr_log(message: str) -> None:
    """Default progress sink of the fetchers: one line on stderr."""
    print(message, file=sys.stderr, flush=True)


def bytes_digest(data: bytes, algorithm: str = "sha256") -> str:
    """Hex digest of ``data`` with ``algorithm`` ("sha256", "md5", ...)."""
    return hashlib.new(algorithm, data).hexdigest()


def file_digest(path: Path | str, algorithm: str = "sha256", *, gunzip: bool = False) -> str:
    """Hex digest of a file's bytes (of its decompressed bytes if ``gunzip``), read in chunks."""
    h = hashlib.new(algorithm)
    opener = gzip.open if gunzip else open
    try:
        with opener(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise UnsafeFileError(f"{path}: cannot read it{' as gzip' if gunzip else ''} ({e}); "
                              "delete it and fetch it again") from e
    return h.hexdigest()


def checksum_verifier(expected: str, algorithm: str = "sha256", *, gunzip: bool = False) -> Verifier:
    """A verifier that refuses a file whose ``algorithm`` digest is not ``expected``.

    ``gunzip=True`` hashes the decompressed content (the published MNIST SHA-256 sums are of the
    uncompressed IDX files).
    """

    def verify(path: Path) -> None:
        got = file_digest(path, algorithm, gunzip=gunzip)
        if got != expected.lower():
            what = "decompressed content" if gunzip else "file"
            raise UnsafeFileError(f"{path}: {algorithm} of the {what} is {got}, expected {expected}; "
                                  "the file is corrupted or not the official one: delete it and fetch again")

    return verify


def _check_scheme(url: str) -> None:
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ALLOWED_SCHEMES:
        raise UnsafeFileError(f"refusing to download {url!r}: scheme {scheme!r} is not one of "
                              f"{', '.join(ALLOWED_SCHEMES)}")


def _fetch_one(url: str, dest: Path, timeout: float, log: Log) -> Path:
    """Copy ``url`` into a temporary file next to ``dest``; return the temporary path."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) if hasattr(response, "headers") else 0
            log(f"downloading {url}" + (f" ({total / 1e6:.1f} MB)" if total else ""))
            shutil.copyfileobj(response, out, CHUNK)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def download(urls: Sequence[str] | str, dest: Path | str, *, verify: Verifier | None = None,
             timeout: float = 60.0, log: Log | None = None) -> Path:
    """Download the first of ``urls`` that works and verifies into ``dest`` (atomically).

    Each mirror is tried in turn: the bytes go to a temporary file in ``dest``'s folder, ``verify``
    checks it (e.g. :func:`checksum_verifier`), and only then is it renamed to ``dest``. ``file://``
    URLs work too (tests, or a copy on a shared disk).

    Raises
    ------
    UnsafeFileError
        every mirror answered but none with the expected content;
    DatasetNotFoundError
        no mirror could be reached; the message lists each error and where to put a hand-made copy.
    """
    log = log or stderr_log
    urls = [urls] if isinstance(urls, str) else list(urls)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    for url in urls:
        _check_scheme(url)
    errors: list[str] = []
    mismatch = False
    for url in urls:
        try:
            tmp = _fetch_one(url, dest, timeout, log)
        except (OSError, ValueError) as e:  # URLError, HTTPError, timeouts are OSErrors
            errors.append(f"{url}: {e}")
            continue
        try:
            if verify is not None:
                verify(tmp)
        except UnsafeFileError as e:
            tmp.unlink(missing_ok=True)
            mismatch = True
            errors.append(f"{url}: {e}")
            continue
        os.replace(tmp, dest)
        return dest
    detail = "\n  ".join(errors) or "no URL given"
    if mismatch:
        raise UnsafeFileError(f"no mirror delivered the expected {dest.name}:\n  {detail}")
    raise DatasetNotFoundError(f"could not download {dest.name}:\n  {detail}\nWithout network access, "
                               f"download it elsewhere and copy it to {dest}, then run the command again.")


def extract_tar(archive: Path | str, dest_dir: Path | str) -> Path:
    """Extract a tar archive into a new temporary folder inside ``dest_dir`` and return that folder.

    Uses tarfile's ``filter="data"`` (PEP 706): absolute paths, ``..`` components, links pointing
    outside the folder and device files are refused with :class:`UnsafeFileError`. The caller moves
    what it needs out of the returned folder (an atomic rename) and deletes the rest.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest_dir, prefix=".extract-"))
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(tmp, filter="data")
    except tarfile.FilterError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        member = getattr(getattr(e, "tarinfo", None), "name", "?")
        raise UnsafeFileError(f"{archive}: refusing to extract member {member!r} ({e}); "
                              "the archive is not the official one, delete it") from e
    except (tarfile.TarError, EOFError, OSError) as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UnsafeFileError(f"{archive}: not a readable tar archive ({e}); "
                              "delete it and fetch again") from e
    return tmp


def fetch_command(name: str, data_dir: Path | str) -> str:
    """The shell command that fetches dataset ``name`` into ``data_dir`` (quoted in error messages)."""
    return f"rethinkgen data fetch {name} --data-dir {data_dir}"
