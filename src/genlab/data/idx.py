"""The idx format of MNIST / Fashion-MNIST (LeCun et al.): read, write, download with checksums.

An idx file is a big-endian header -- two zero bytes, a type code (0x08 = uint8), the number of
dimensions -- then one uint32 per dimension, then the payload. MNIST images use magic 2051
(0x00000803: uint8, 3 dims), labels magic 2049 (uint8, 1 dim). Files are usually gzip-compressed.
"""
from __future__ import annotations

import gzip
import hashlib
import math
import os
import struct
import sys
import tempfile
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from genlab.errors import DataError

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# where each file that ``locate`` handed out came from: {path: dataset name}, for the advice below
_LOCATED: dict[Path, str] = {}


def _in_cache(path: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(cache_dir().resolve())
    except (OSError, RuntimeError):
        return False


def fix_advice(path: str | Path) -> str:
    """What to do about a bad file. A file genlab downloaded into its cache may be deleted and fetched
    again; a file in the user's own folder (``--data-dir`` / ``GENLAB_DATA``) is never to be deleted:
    say where a good copy comes from."""
    path = Path(path)
    if _in_cache(path):
        return "Delete it and run again to download a fresh copy."
    name = _LOCATED.get(path)
    where = (f"`genlab data info {name}` lists where the original files come from and their sha256"
             if name else "the dataset's original distribution")
    return (f"This is your own copy, so genlab leaves it alone: replace it with a good copy of the original "
            f"file ({where}), or drop --data-dir / GENLAB_DATA to let genlab download one into its cache.")


def _read_bytes(path: Path) -> bytes:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (EOFError, OSError, zlib.error) as e:
        what = "decompress" if path.suffix == ".gz" else "read"
        raise DataError(f"{path}: cannot {what} ({e}); the file is truncated or corrupt. "
                        f"{fix_advice(path)}") from None


def read_idx(path: str | Path, expect_magic: int | None = None) -> np.ndarray:
    """Read an idx (optionally .gz) file into a numpy array, checking header and length."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"{path}: only {len(raw)} bytes; not an idx file (truncated?)")
    magic = struct.unpack(">I", raw[:4])[0]
    zero, code, ndim = raw[0:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in _DTYPES or ndim == 0:
        raise DataError(f"{path}: bad magic number {magic} (0x{magic:08x}); not an idx file")
    if expect_magic is not None and magic != expect_magic:
        raise DataError(f"{path}: magic number {magic}, expected {expect_magic}; "
                        f"is this the right file (images vs labels)?")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header cut short ({len(raw)} bytes); the file is truncated")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[code])
    expected = math.prod(dims) * dtype.itemsize   # exact: np.prod wraps around past 2**63
    payload = len(raw) - header
    if math.prod(d for d in dims if d) * dtype.itemsize > sys.maxsize:   # numpy's bound, zero sizes aside
        raise DataError(f"{path}: header sizes {dims} describe an array too large for any file; the header is "
                        f"corrupt. {fix_advice(path)}")
    if payload != expected:
        raise DataError(f"{path}: header promises {dims} = {expected} bytes of data but the file "
                        f"holds {payload}; it is truncated or corrupt. {fix_advice(path)}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(dtype.newbyteorder("="))  # flat -> dims


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write a uint8 array as idx (gzip-compressed when the name ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.tobytes()
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as f:
        f.write(data)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_sha256(path: Path, expected: str | None, advice: str | None = None) -> None:
    if expected and (got := sha256(path)) != expected:
        raise DataError(f"{path}: sha256 {got[:16]}... does not match the published {expected[:16]}...; "
                        f"the file is truncated, corrupt or a different version. "
                        f"{fix_advice(path) if advice is None else advice}")


def download(urls: list[str], dest: Path, expected_sha256: str | None, progress: bool = True) -> Path:
    """Fetch the first URL that works into ``dest`` atomically, then check its sha256."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
                total = int(resp.headers.get("Content-Length") or 0)
                _copy_with_progress(resp, out, total, dest.name if progress else None)
            check_sha256(Path(tmp), expected_sha256, advice="This mirror served another file.")
            os.replace(tmp, dest)
            return dest
        except (OSError, DataError) as e:
            errors.append(f"{url}: {e}")
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    raise DataError(f"could not download {dest.name}:\n  " + "\n  ".join(errors) +
                    "\nIf this machine is offline, put the files in a folder and pass --data-dir DIR "
                    "(or set GENLAB_DATA).")


def _copy_with_progress(src, dst, total: int, label: str | None) -> None:
    from tqdm.auto import tqdm
    with tqdm(total=total or None, unit="B", unit_scale=True, desc=label, disable=label is None or None,
              leave=False) as bar:
        while chunk := src.read(1 << 16):
            dst.write(chunk)
            bar.update(len(chunk))


def cache_dir() -> Path:
    """Where downloads go: ``$GENLAB_CACHE``, else ``~/.cache/genlab``."""
    return Path(os.environ.get("GENLAB_CACHE") or Path.home() / ".cache" / "genlab")


def locate(name: str, filename: str, urls: list[str], sha: str | None, data_dir: str | None) -> Path:
    """Find ``filename`` of dataset ``name``: in the local folder if one is given, else in the cache
    (downloading it there on first use). The sha256 of a ``.gz`` file is checked; an unpacked copy
    (``train-images-idx3-ubyte`` beside or instead of ``train-images-idx3-ubyte.gz``) is read too, and
    checked by its idx header and length, since the published checksums are of the ``.gz`` files."""
    data_dir = data_dir or os.environ.get("GENLAB_DATA")
    unpacked = filename[:-3] if filename.endswith(".gz") else None
    if data_dir:
        root = Path(data_dir).expanduser()
        if not root.is_dir():
            raise DataError(f"data folder {root} does not exist; pass an existing folder with "
                            f"--data-dir or GENLAB_DATA (files laid out as {root}/{name}/{filename})")
        found = _first_file(root / name / filename, root / filename)
        if found is not None:
            return _located(found, name, sha)
        found = unpacked and _first_file(root / name / unpacked, root / unpacked)
        if found:
            return _located(found, name, None)
        also = f" (or unpacked, {unpacked})" if unpacked else ""
        raise DataError(f"{root / name / filename}: file not found{also}. Put the original {name} files "
                        f"in {root / name}/ or drop --data-dir/GENLAB_DATA to download them.")
    path = cache_dir() / name / filename
    if path.exists():
        return _located(path, name, sha)
    if unpacked and (path.parent / unpacked).is_file():
        return _located(path.parent / unpacked, name, None)
    return _located(download(urls, path, sha), name, None)


def _first_file(*candidates: Path) -> Path | None:
    return next((c for c in candidates if c.is_file()), None)


def _located(path: Path, name: str, sha: str | None) -> Path:
    _LOCATED[path] = name
    check_sha256(path, sha)
    return path


