"""The third-party test models: found from any file of the checkout, checked against SOURCES.md."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from wasinn.testing import models
from wasinn.testing.models import ThirdPartyModelError, find_third_party_dir, third_party_dir, third_party_model

REPO = Path(__file__).resolve().parents[3]
COMMITTED = REPO / "models" / "third-party"


def test_the_checkout_holds_every_listed_model_unchanged() -> None:
    folder = third_party_dir(__file__)
    assert folder == COMMITTED
    listed = models.listed_files(folder)
    assert "wasmedge-tflite-birds/bird.jpg" in listed and "wamr-tflite-test-models/sum.tflite" in listed
    for relative, (size, sha256) in listed.items():
        data = (folder / relative).read_bytes()
        assert len(data) == size and hashlib.sha256(data).hexdigest() == sha256


def test_every_file_in_the_folder_is_listed_with_its_origin() -> None:
    listed = set(models.listed_files(COMMITTED))
    on_disk = {p.relative_to(COMMITTED).as_posix() for p in COMMITTED.rglob("*") if p.is_file()} - {"SOURCES.md"}
    assert on_disk == listed
    sources = (COMMITTED / "SOURCES.md").read_text(encoding="utf-8")
    for folder in {relative.split("/")[0] for relative in listed}:
        assert f"## {folder}/" in sources  # each folder has a section: origin and licence


def _fake_checkout(tmp_path: Path) -> Path:
    folder = tmp_path / "checkout" / "models" / "third-party"
    (folder / "set").mkdir(parents=True)
    (folder / "set" / "m.bin").write_bytes(b"model bytes")
    digest = hashlib.sha256(b"model bytes").hexdigest()
    (folder / "SOURCES.md").write_text(f"# x\n\n| file | bytes | sha256 |\n|---|---|---|\n"
                                       f"| `set/m.bin` | 11 | {digest} |\n", encoding="utf-8")
    (tmp_path / "checkout" / "pkg" / "tests").mkdir(parents=True)
    return folder


def test_found_by_walking_up_from_a_nested_file(tmp_path: Path) -> None:
    folder = _fake_checkout(tmp_path)
    start = tmp_path / "checkout" / "pkg" / "tests" / "test_x.py"
    assert find_third_party_dir(start) == folder.resolve()
    assert third_party_model("set/m.bin", start) == folder.resolve() / "set" / "m.bin"


def test_a_changed_file_is_refused(tmp_path: Path) -> None:
    folder = _fake_checkout(tmp_path)
    (folder / "set" / "m.bin").write_bytes(b"model bytez")  # same size, other bytes
    with pytest.raises(ThirdPartyModelError, match="sha256"):
        third_party_model("set/m.bin", folder)


def test_a_missing_or_unlisted_file_is_refused(tmp_path: Path) -> None:
    folder = _fake_checkout(tmp_path)
    with pytest.raises(ThirdPartyModelError, match="not listed"):
        third_party_model("set/other.bin", folder)
    copy = tmp_path / "copy"
    shutil.copytree(folder.parent.parent, copy)
    (copy / "models" / "third-party" / "set" / "m.bin").unlink()
    with pytest.raises(ThirdPartyModelError, match="missing"):
        third_party_dir(copy / "pkg")


def test_no_checkout_no_models(tmp_path: Path) -> None:
    with pytest.raises(ThirdPartyModelError, match="no models/third-party"):
        find_third_party_dir(tmp_path)


def test_nothing_in_the_repository_reaches_outside_it() -> None:
    """No test, benchmark, script or doc reads, or tells the reader to look in, a folder beside the checkout."""
    offenders = []
    for path in REPO.rglob("*"):
        if (not path.is_file() or path.suffix not in {".py", ".md", ".toml", ".ini", ".c", ".h", ".wat", ".yml", ""}
                or any(part.startswith(".") for part in path.relative_to(REPO).parts)):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        if "../shared" in text or "shared/models" in text or "shared/abi.md" in text or "shared/backends.md" in text:
            offenders.append(path.relative_to(REPO).as_posix())
    assert offenders == [path for path in offenders if path.endswith("test_third_party_models.py")]
