"""The one writer of arrays and JSON: atomic, hashed, never a pickle.

Every file the project writes (eigendistortions, stimulus-set items,
manifests) goes through :func:`atomic_write_bytes`, so a crash leaves either
the old file or the new one, never half of one.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import json
import os
import secrets
import tempfile
import tomllib
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EigdistError, FileFormatError  # noqa: F401 (FileFormatError: load_json raises it)


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _temporary_name(path: Path) -> Path:
    """The name of a temporary of ``path`` (``.<name>.<random>.tmp``, beside it): what a kill may leave behind."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> str:
    """Write ``data`` to ``path`` via a fsynced temp file and a rename; return its sha256.

    The temporary's whole life lies inside the ``try``: its name is chosen before it is
    created, so an exception at any moment (Ctrl-C's ``KeyboardInterrupt`` included, even one
    raised between the ``open`` and the next line) removes it. Only a kill that runs no Python
    (SIGKILL, power loss) can leave one; the build removes those when it next starts.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, fd = _temporary_name(path), None
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as with open()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        closing, fd = fd, None  # fd is None before the close: an interrupt never closes it twice
        os.close(closing)
        os.replace(tmp, path)
    except FileExistsError:  # the random name is taken (never seen): that file is not ours to remove
        raise
    except BaseException:
        if fd is not None:
            os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    return sha256_bytes(data)


def check_output_folder(path: str | os.PathLike, option: str) -> Path:
    """Check, before any work, that ``path`` is a folder this process can write into (or create).

    A folder that does not exist yet is checked through its nearest existing parent, by the
    permissions and by a probe file created and removed there, so a read-only disk or another
    user's folder is found before hours of work, not after them.

    Raises
    ------
    EigdistError
        If ``path`` is a file, lies under a file, or the folder (or the existing folder it
        would be created in) cannot be written; the message names ``option`` and the path.
    """
    path = Path(path)
    existing = path
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        what = "is a file" if existing == path else f"lies under the file {existing}"
        raise EigdistError(f"{option} {str(path)!r} {what}; give a folder")
    where = "" if existing == path else f" (it would be created in {existing})"
    if not os.access(existing, os.W_OK | os.X_OK):
        raise EigdistError(f"{option} {str(path)!r} is read-only for this user{where}; give a writable folder")
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".eigdist-probe-")
    except OSError as exc:
        raise EigdistError(f"{option} {str(path)!r} cannot be written ({exc.strerror}){where}; "
                           "give a writable folder") from None
    os.close(fd)
    os.unlink(probe)
    return path


def npy_bytes(array: np.ndarray) -> bytes:
    """The ``.npy`` bytes of ``array`` (deterministic for equal arrays)."""
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def save_npy(path: str | os.PathLike, array: np.ndarray) -> str:
    """Atomically write ``array`` as ``.npy``; return the file's sha256."""
    return atomic_write_bytes(path, npy_bytes(array))


def load_npy(path: str | os.PathLike) -> np.ndarray:
    """Read a ``.npy`` file written by :func:`save_npy` (pickles refused)."""
    return np.load(path, allow_pickle=False)


def json_bytes(obj: Any) -> bytes:
    """Stable, human-readable JSON bytes (sorted keys, two-space indent, final newline)."""
    return (json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def save_json(path: str | os.PathLike, obj: Any) -> str:
    """Atomically write ``obj`` as JSON; return the file's sha256."""
    return atomic_write_bytes(path, json_bytes(obj))


def load_json(path: str | os.PathLike) -> Any:
    """Read a JSON file.

    Raises
    ------
    FileFormatError
        If the file is not UTF-8 JSON text; the message names the file (the decoder's error is its cause).
    """
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FileFormatError(f"{path}: not valid JSON ({exc}); restore it or rebuild it") from exc


def read_toml(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    """Read a TOML file; a missing file or bad TOML is an error naming the file.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    EigdistError
        If ``path`` is a folder, or the file is not valid TOML (the message names the file and the parser's position).
    """
    path = Path(path)
    if path.is_dir():
        raise EigdistError(f"{what} {str(path)!r} is a folder; give the TOML file in it")
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        return tomllib.loads(decode_text(path.read_bytes(), path))
    except tomllib.TOMLDecodeError as exc:
        raise EigdistError(f"{path.name}: not valid TOML: {exc}") from None


def nul_row(raw: bytes) -> int | None:
    """The line (1 = the first) of a text file's first NUL byte, or ``None``: what a crash leaves in a file."""
    i = raw.find(b"\x00")
    return None if i < 0 else raw.count(b"\n", 0, i) + 1


def decode_text(data: bytes, path: str | os.PathLike) -> str:
    """Text of a file saved by any editor: UTF-8 (with or without a byte-order mark) or UTF-16 with its mark.

    Raises
    ------
    EigdistError
        Naming ``path`` when the bytes are none of these.
    """
    for bom, codec in ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16")):
        if data.startswith(bom):
            break
    else:
        codec = "utf-8"
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise EigdistError(
            f"{Path(path).name}: not UTF-8 or UTF-16 text (byte {exc.start}); save it as UTF-8"
        ) from None
