from __future__ import annotations

import json

import pytest

import wasinn
from wasinn import hardware
from wasinn.enums import ExecutionTarget


def test_probe_describes_this_machine() -> None:
    hardware.probe.cache_clear()
    snapshot = hardware.probe()
    assert snapshot.cpu.cores >= 1
    assert snapshot.cpu.arch
    assert snapshot.has(ExecutionTarget.CPU)
    assert hardware.probe() is snapshot  # probed once, cached


def test_env_override_pretends_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    override = {"accelerators": [{"kind": "gpu", "name": "Pretend GPU", "vendor": "nvidia"}],
                "cpu": {"vendor": "intel", "features": ["avx2", "amx"]}}
    monkeypatch.setenv(hardware.HARDWARE_ENV, json.dumps(override))
    hardware.probe.cache_clear()
    try:
        snapshot = hardware.probe()
        assert snapshot.has(ExecutionTarget.GPU, vendor="nvidia")
        assert not snapshot.has(ExecutionTarget.TPU)
        assert snapshot.cpu.is_intel and snapshot.cpu.has("amx")
        assert snapshot.devices(ExecutionTarget.GPU)[0].source == "override"
    finally:
        hardware.probe.cache_clear()


def test_bad_override_is_ignored_not_fatal(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv(hardware.HARDWARE_ENV, "{not json")
    hardware.probe.cache_clear()
    try:
        snapshot = hardware.probe()
        assert snapshot.cpu.cores >= 1
        assert "ignoring WASINN_HARDWARE" in caplog.text
    finally:
        hardware.probe.cache_clear()


def test_probe_survives_unreadable_files(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(path: object) -> str:
        raise RuntimeError("unreadable")

    monkeypatch.setattr(hardware, "_probe_cpu", lambda: (_ for _ in ()).throw(OSError("no /proc")))
    hardware.probe.cache_clear()
    try:
        snapshot = hardware.probe()
        assert snapshot.cpu.vendor == "unknown"
    finally:
        hardware.probe.cache_clear()


def test_host_accepts_an_explicit_snapshot() -> None:
    fake = wasinn.Hardware(cpu=wasinn.Cpu("x86_64", "amd", "test", 4, frozenset({"avx2"})),
                           accelerators=(wasinn.Device(ExecutionTarget.TPU, "Test NPU", "intel"),))
    host = wasinn.WasiNnHost(hardware=fake)
    assert host.hardware is fake
    round_trip = wasinn.Hardware.from_dict(fake.to_dict())
    assert round_trip.cpu == fake.cpu
    assert round_trip.accelerators[0].name == "Test NPU"


@pytest.mark.parametrize(("vendor", "words"), [
    ("amd", "an AMD CPU"), ("intel", "an Intel CPU"), ("arm", "an Arm CPU"), ("apple", "an Apple CPU"),
    ("ampere", "an Ampere CPU"), ("unknown", "a CPU of unknown vendor"), ("hygon", "a hygon CPU"),
])
def test_cpu_description_takes_the_right_article(vendor: str, words: str) -> None:
    assert wasinn.Cpu("x86_64", vendor, "test", 4, frozenset()).description == words
