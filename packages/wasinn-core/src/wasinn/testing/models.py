"""Find the third-party test models committed in a checkout, and check them against their sha256.

A repository keeps models it did not make (with their origin and licence) in ``models/third-party/``
beside a ``SOURCES.md`` whose table lists each file's path, size and sha256. Tests and benchmarks
ask for a model by its path in that folder; this module walks up from the caller's file to the
checkout's ``models/third-party/``, verifies the listed files once per process, and returns the path.
A missing folder, an unlisted file or a changed one raises, so a test never runs on the wrong model
and never reaches outside the checkout for one.
"""

from __future__ import annotations

import hashlib
import re
import threading
from pathlib import Path

#: Where the third-party models live, relative to a checkout's root.
THIRD_PARTY_DIR = Path("models") / "third-party"
SOURCES = "SOURCES.md"

# One table row of SOURCES.md: | `path` | bytes | sha256 |
_ROW = re.compile(r"^\|\s*`(?P<path>[^`]+)`\s*\|\s*(?P<size>\d+)\s*\|\s*(?P<sha256>[0-9a-f]{64})\s*\|\s*$")

_verified: dict[Path, dict[str, str]] = {}
_lock = threading.Lock()


class ThirdPartyModelError(RuntimeError):
    """The checkout's third-party models are missing, unlisted or do not match their sha256."""


def find_third_party_dir(start: str | Path) -> Path:
    """The ``models/third-party`` folder of the checkout that holds ``start`` (a file or folder)."""
    here = Path(start).resolve()
    for folder in [here, *here.parents]:
        candidate = folder / THIRD_PARTY_DIR
        if (candidate / SOURCES).is_file():
            return candidate
    raise ThirdPartyModelError(f"no {THIRD_PARTY_DIR}/{SOURCES} in {here} or any folder above it")


def listed_files(folder: Path) -> dict[str, tuple[int, str]]:
    """The files SOURCES.md lists: relative path -> (size in bytes, sha256)."""
    rows: dict[str, tuple[int, str]] = {}
    for line in (folder / SOURCES).read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line.strip())
        if match:
            rows[match["path"]] = (int(match["size"]), match["sha256"])
    return rows


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify(folder: Path) -> dict[str, str]:
    """Check every listed file's size and sha256 (once per process); relative path -> sha256."""
    folder = folder.resolve()
    with _lock:
        cached = _verified.get(folder)
        if cached is not None:
            return cached
        rows = listed_files(folder)
        if not rows:
            raise ThirdPartyModelError(f"{folder / SOURCES} lists no files")
        for relative, (size, sha256) in rows.items():
            path = folder / relative
            if not path.is_file():
                raise ThirdPartyModelError(f"{path} is listed in {SOURCES} but missing")
            if path.stat().st_size != size or _sha256(path) != sha256:
                raise ThirdPartyModelError(f"{path} does not match the size and sha256 listed in {SOURCES}")
        _verified[folder] = {relative: sha256 for relative, (_, sha256) in rows.items()}
        return _verified[folder]


def third_party_dir(start: str | Path) -> Path:
    """The verified ``models/third-party`` folder of the checkout that holds ``start``."""
    folder = find_third_party_dir(start)
    verify(folder)
    return folder


def third_party_model(relative: str, start: str | Path) -> Path:
    """The path of one listed third-party file (e.g. ``"wasmedge-tflite-birds/bird.jpg"``), verified."""
    folder = find_third_party_dir(start)
    if relative not in verify(folder):
        raise ThirdPartyModelError(f"{relative} is not listed in {folder / SOURCES}")
    return folder / relative
