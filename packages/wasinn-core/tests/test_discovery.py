from __future__ import annotations

import subprocess
import sys

import pytest

import wasinn
from wasinn import BackendInfo, ModelFormat, hookimpl
from wasinn.plugins import discover, parse_name_list
from wasinn_test_backends.fake import FakeBackend


def test_entry_points_are_discovered_each_on_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WASINN_BACKENDS")
    registry = discover()
    names = set(registry.names)
    assert {"fake", "fakegpu", "broken", "incomplete"} <= names
    fake = registry.get("fake")
    assert fake is not None and fake.available
    assert fake.distribution == "wasinn-test-backends" and fake.version == "0.0.1"
    assert fake.info is not None and fake.info.runtime == "numpy"
    broken = registry.get("broken")
    assert broken is not None and not broken.available
    assert "imaginary_runtime" in (broken.unavailable or "")
    incomplete = registry.get("incomplete")
    assert incomplete is not None and not incomplete.available
    assert "can_handle" in (incomplete.unavailable or "") and "compute" in (incomplete.unavailable or "")


def test_class_entry_point_is_instantiated() -> None:
    gpu = discover().get("fakegpu")
    assert gpu is not None and gpu.available
    assert type(gpu.plugin).__name__ == "GpuFake"


@pytest.mark.parametrize(("allow", "deny", "expected"), [
    ("fake", None, {"fake"}),
    ("fake, fakegpu", None, {"fake", "fakegpu"}),
    (None, "broken,incomplete", {"fake", "fakegpu"}),
    ("fake,fakegpu", "fakegpu", {"fake"}),
])
def test_allow_and_deny_lists_from_the_environment(monkeypatch: pytest.MonkeyPatch, allow: str | None,
                                                   deny: str | None, expected: set[str]) -> None:
    if allow is not None:
        monkeypatch.setenv("WASINN_BACKENDS", allow)
    if deny is not None:
        monkeypatch.setenv("WASINN_DISABLE_BACKENDS", deny)
    names = set(discover().names)
    assert names & {"fake", "fakegpu", "broken", "incomplete"} == expected


def test_denied_backend_is_never_imported() -> None:
    code = ("import sys, os; os.environ['WASINN_DISABLE_BACKENDS'] = 'incomplete'; "
            "from wasinn.plugins import discover; r = discover(); "
            "print('wasinn_test_backends.incomplete' in sys.modules, sorted(r.names))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("False ['broken', 'fake', 'fakegpu']"), out


def test_parse_name_list() -> None:
    assert parse_name_list(None) is None
    assert parse_name_list("  ") is None
    assert parse_name_list("a, b,,c ") == ["a", "b", "c"]


class _BadSignature:
    @hookimpl
    def load(self, model: object, hw: object, surprise: object) -> None:  # not in the hookspec
        pass


class _RaisingInfo(FakeBackend):
    @hookimpl
    def backend_info(self) -> BackendInfo:
        raise RuntimeError("cannot describe myself")


class _MissingRuntime(FakeBackend):
    @hookimpl
    def backend_info(self) -> BackendInfo:
        return BackendInfo("someruntime", None, (ModelFormat.ONNX,), unavailable="someruntime is not installed")


@pytest.mark.usefixtures("no_allow_list")
def test_broken_registrations_are_reported_not_raised() -> None:
    registry = discover(use_entry_points=False, extra={"badsig": _BadSignature(), "raising": _RaisingInfo(),
                                                         "missing": _MissingRuntime()})
    reasons = {b.name: b.unavailable for b in registry}
    assert "could not register" in (reasons["badsig"] or "")
    assert "cannot describe myself" in (reasons["raising"] or "")
    assert reasons["missing"] == "someruntime is not installed"
    assert registry.available() == []


def test_host_lists_backends_as_data(host: wasinn.WasiNnHost) -> None:
    report = {entry["name"]: entry for entry in host.backends_report()}
    assert report["fake"]["available"] and report["fake"]["formats"] == ["wasinn-test"]
    assert report["broken"]["available"] is False and report["broken"]["unavailable_reason"]


def test_importing_wasinn_imports_no_backend() -> None:
    code = "import sys, wasinn; wasinn.WasiNnHost; print(sorted(m for m in sys.modules if 'backend' in m))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# -- reading entry points without importlib.metadata -------------------------------------------------
def _metadata_answer(group: str) -> list[tuple[str, str, str | None, str | None]]:
    import importlib.metadata

    found = []
    for ep in importlib.metadata.entry_points(group=group):
        dist = getattr(ep, "dist", None)
        found.append((ep.name, ep.value, dist.metadata["Name"] if dist else None, dist.version if dist else None))
    return sorted(found)


def _our_answer(group: str) -> list[tuple[str, str, str | None, str | None]]:
    from wasinn.plugins import _entry_points

    return sorted((ep.name, ep.value, *ep.distribution()) for ep in _entry_points(group))


@pytest.mark.parametrize("group", ["wasinn.backends", "console_scripts", "pytest11", "no.such.group"])
def test_entry_points_match_importlib_metadata(group: str) -> None:
    assert _our_answer(group) == _metadata_answer(group)


def test_distribution_versions_match_importlib_metadata() -> None:
    import importlib.metadata

    from wasinn.plugins import distribution_version

    names = {dist.metadata["Name"] for dist in importlib.metadata.distributions()}
    assert {"wasinn-core", "pluggy", "numpy"} <= names
    for name in names:
        assert distribution_version(name) == importlib.metadata.version(name), name
        assert distribution_version(name.upper().replace("-", "_")) == importlib.metadata.version(name), name
    assert distribution_version("surely-not-installed-wasinn-dist") is None


def _write_dist(root: object, folder: str, metadata: str, entry_points: str | None, *, newline: str = "\n") -> None:
    from pathlib import Path

    path = Path(str(root)) / folder
    path.mkdir()
    (path / ("PKG-INFO" if folder.endswith(".egg-info") else "METADATA")).write_bytes(
        metadata.replace("\n", newline).encode())
    if entry_points is not None:
        (path / "entry_points.txt").write_text(entry_points)


def test_odd_layouts_match_importlib_metadata(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathlib import Path

    first, second = Path(str(tmp_path)) / "first", Path(str(tmp_path)) / "second"
    first.mkdir()
    second.mkdir()
    group = "wasinn.test.odd"
    eps = f"[{group}]\nalpha = pkg_alpha.mod:thing\nbeta=pkg_beta [extra]\n\n[other]\nx = y\n"
    _write_dist(first, "Odd_Dist-1.0.dist-info", "Metadata-Version: 2.1\nName: odd-dist\nVersion: 1.0\n\nbody\n", eps)
    # The same distribution again later on sys.path: shadowed, as importlib.metadata shadows it.
    _write_dist(second, "odd_dist-2.0.dist-info", "Name: odd-dist\nVersion: 2.0\n", eps)
    _write_dist(second, "legacy-0.3.egg-info", "Name: legacy\nVersion: 0.3\n", f"[{group}]\ngamma = legacy.plugin\n",
                newline="\r\n")
    _write_dist(second, "nameless-1.dist-info", "Summary: no name or version\n", f"[{group}]\ndelta = d\n")
    monkeypatch.syspath_prepend(str(second))
    monkeypatch.syspath_prepend(str(first))
    ours = _our_answer(group)
    assert ours == _metadata_answer(group)
    assert [(name, version) for name, _, _, version in ours] == [
        ("alpha", "1.0"), ("beta", "1.0"), ("delta", None), ("gamma", "0.3")]


def test_unusual_layouts_fall_back_to_importlib_metadata(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile
    from pathlib import Path

    archive = Path(str(tmp_path)) / "plugins.zip"
    group = "wasinn.test.zipped"
    with zipfile.ZipFile(archive, "w") as zipped:
        zipped.writestr("zipped_dist-1.0.dist-info/METADATA", "Name: zipped-dist\nVersion: 1.0\n")
        zipped.writestr("zipped_dist-1.0.dist-info/entry_points.txt", f"[{group}]\nzeta = zipped.mod\n")
    monkeypatch.syspath_prepend(str(archive))
    assert _our_answer(group) == _metadata_answer(group) == [("zeta", "zipped.mod", "zipped-dist", "1.0")]


def test_listing_imports_neither_importlib_metadata_nor_backend_implementations() -> None:
    code = ("import sys, wasinn.plugins as p; r = p.discover(); assert r.names, r.names; "
            "bad = sorted(m for m in sys.modules if m == 'importlib.metadata' or m.endswith('.backend')); "
            "print(bad)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


def test_deferred_loads_once_on_first_use_from_any_thread() -> None:
    import threading
    import time

    from wasinn.plugins import deferred

    calls: list[int] = []

    def load() -> object:
        calls.append(1)
        time.sleep(0.05)  # long enough for every thread to arrive while the first is still loading
        return object()

    get = deferred(load)
    assert calls == []  # nothing until the first call
    results: list[object] = []
    threads = [threading.Thread(target=lambda: results.append(get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(results) == 8 and all(r is results[0] for r in results)
    assert get() is results[0]
