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
