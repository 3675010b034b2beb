"""A snapshot of this machine's hardware, for backends to score against.

Probed once per process, cheaply (files under /proc, /dev and /sys; no runtime imports, no
subprocesses), and never allowed to fail: whatever cannot be read is simply left out. Tests and
users can replace parts of it with the ``WASINN_HARDWARE`` environment variable (JSON) or by passing
a :class:`Hardware` to :class:`wasinn.WasiNnHost`::

    WASINN_HARDWARE='{"accelerators": [{"kind": "gpu", "name": "Pretend GPU", "vendor": "nvidia"}]}'
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasinn.enums import ExecutionTarget

log = logging.getLogger("wasinn.hardware")

HARDWARE_ENV = "WASINN_HARDWARE"

# Flags from /proc/cpuinfo worth reporting: the ones ML runtimes choose kernels by.
_INTERESTING_FLAGS = {
    "sse4_2": "sse4.2",
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512_vnni": "avx512_vnni",
    "avx512_bf16": "avx512_bf16",
    "avx512_fp16": "avx512_fp16",
    "avx_vnni": "avx_vnni",
    "amx_tile": "amx",
    "amx_bf16": "amx_bf16",
    "amx_int8": "amx_int8",
    "asimd": "neon",
    "fphp": "fp16",
    "asimdhp": "fp16",
    "bf16": "bf16",
    "i8mm": "i8mm",
    "sve": "sve",
    "sve2": "sve2",
}

_PCI_VENDORS = {"0x10de": "nvidia", "0x1002": "amd", "0x8086": "intel"}
_VENDOR_NAMES = {"amd": "AMD", "intel": "Intel", "arm": "Arm", "apple": "Apple", "ampere": "Ampere",
                 "nvidia": "NVIDIA"}


@dataclass(frozen=True, slots=True)
class Cpu:
    """The host CPU. ``features`` uses normalised names: avx2, avx512f, avx512_bf16, amx, neon, ..."""

    arch: str
    vendor: str
    model: str
    cores: int
    features: frozenset[str]

    def has(self, feature: str) -> bool:
        return feature in self.features

    @property
    def is_intel(self) -> bool:
        return self.vendor == "intel"

    @property
    def description(self) -> str:
        """The CPU in words, with its article, for reasons and logs: "an AMD CPU", "an Intel CPU"."""
        if self.vendor in ("", "unknown"):
            return "a CPU of unknown vendor"
        name = _VENDOR_NAMES.get(self.vendor, self.vendor)
        return f"{'an' if name[0].lower() in 'aeiou' else 'a'} {name} CPU"


@dataclass(frozen=True, slots=True)
class Device:
    """An accelerator (or a runtime's view of one). ``source`` says who reported it."""

    kind: ExecutionTarget
    name: str
    vendor: str = "unknown"
    source: str = "probe"


@dataclass(frozen=True, slots=True)
class Hardware:
    """What backends score against in ``can_handle``."""

    cpu: Cpu
    accelerators: tuple[Device, ...] = field(default=())

    def devices(self, kind: ExecutionTarget) -> tuple[Device, ...]:
        """The accelerators of one kind (``GPU`` or ``TPU``)."""
        return tuple(d for d in self.accelerators if d.kind is kind)

    def has(self, kind: ExecutionTarget, vendor: str | None = None) -> bool:
        """True if an accelerator of this kind (and vendor, if given) is present. CPU is always there."""
        if kind in (ExecutionTarget.CPU, ExecutionTarget.AUTO):
            return True
        return any(vendor is None or d.vendor == vendor for d in self.devices(kind))

    def with_devices(self, devices: Iterable[Device]) -> Hardware:
        """A copy with more accelerators (duplicates by kind, name and vendor are dropped)."""
        seen = {(d.kind, d.name, d.vendor) for d in self.accelerators}
        extra = []
        for device in devices:
            key = (device.kind, device.name, device.vendor)
            if key not in seen:
                seen.add(key)
                extra.append(device)
        return dataclasses.replace(self, accelerators=self.accelerators + tuple(extra))

    def to_dict(self) -> dict[str, Any]:
        return {
            "cpu": {
                "arch": self.cpu.arch,
                "vendor": self.cpu.vendor,
                "model": self.cpu.model,
                "cores": self.cpu.cores,
                "features": sorted(self.cpu.features),
            },
            "accelerators": [
                {"kind": d.kind.value, "name": d.name, "vendor": d.vendor, "source": d.source}
                for d in self.accelerators
            ],
        }

    @staticmethod
    def from_dict(data: Mapping[str, Any], base: Hardware | None = None) -> Hardware:
        """Build a snapshot from JSON-like data; fields not given come from ``base`` (or defaults)."""
        base_cpu = base.cpu if base else Cpu("unknown", "unknown", "unknown", 1, frozenset())
        cpu_data = data.get("cpu", {})
        cpu = Cpu(
            arch=str(cpu_data.get("arch", base_cpu.arch)),
            vendor=str(cpu_data.get("vendor", base_cpu.vendor)).lower(),
            model=str(cpu_data.get("model", base_cpu.model)),
            cores=int(cpu_data.get("cores", base_cpu.cores)),
            features=frozenset(cpu_data.get("features", base_cpu.features)),
        )
        if "accelerators" in data:
            accelerators = tuple(
                Device(
                    kind=ExecutionTarget(str(item["kind"]).lower()),
                    name=str(item.get("name", item["kind"])),
                    vendor=str(item.get("vendor", "unknown")).lower(),
                    source=str(item.get("source", "override")),
                )
                for item in data["accelerators"]
            )
        else:
            accelerators = base.accelerators if base else ()
        return Hardware(cpu=cpu, accelerators=accelerators)


def _read(path: str | Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def _probe_cpu() -> Cpu:
    arch = platform.machine().lower() or "unknown"
    vendor, model = "unknown", platform.processor() or "unknown"
    flags: set[str] = set()
    for line in _read("/proc/cpuinfo").splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "vendor_id" and vendor == "unknown":
            vendor = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}.get(value, value.lower())
        elif key in ("model name", "Model") and model in ("unknown", "", arch):
            model = value
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        elif key == "CPU implementer" and vendor == "unknown":
            vendor = {"0x41": "arm", "0x61": "apple", "0xc0": "ampere"}.get(value, "arm")
    if platform.system() == "Darwin" and arch == "arm64":
        vendor, flags = "apple", {"asimd", "fphp", "bf16", "i8mm"}
    features = frozenset(name for flag, name in _INTERESTING_FLAGS.items() if flag in flags)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return Cpu(arch=arch, vendor=vendor, model=model, cores=cores, features=features)


def _pci_vendor(sys_device: Path) -> str:
    return _PCI_VENDORS.get(_read(sys_device / "vendor").strip(), "unknown")


def _probe_accelerators() -> tuple[Device, ...]:
    found: list[Device] = []
    nvidia = sorted(Path("/proc/driver/nvidia/gpus").glob("*")) if Path("/proc/driver/nvidia/gpus").is_dir() else []
    for gpu in nvidia:
        name = "NVIDIA GPU"
        for line in _read(gpu / "information").splitlines():
            if line.startswith("Model:"):
                name = line.split(":", 1)[1].strip()
        found.append(Device(ExecutionTarget.GPU, name, "nvidia"))
    if not nvidia and Path("/dev/nvidia0").exists():
        found.append(Device(ExecutionTarget.GPU, "NVIDIA GPU", "nvidia"))
    # Render nodes cover Intel and AMD GPUs (NVIDIA ones were counted above).
    for node in sorted(Path("/sys/class/drm").glob("renderD*")) if Path("/sys/class/drm").is_dir() else []:
        vendor = _pci_vendor(node / "device")
        if vendor in ("intel", "amd"):
            found.append(Device(ExecutionTarget.GPU, f"{vendor.upper()} GPU ({node.name})", vendor))
    # /dev/accel is the kernel's home for NPUs (Intel NPU, AMD XDNA, ...).
    for node in sorted(Path("/sys/class/accel").glob("accel*")) if Path("/sys/class/accel").is_dir() else []:
        vendor = _pci_vendor(node / "device")
        found.append(Device(ExecutionTarget.TPU, f"{vendor.upper()} NPU ({node.name})", vendor))
    if platform.system() == "Darwin" and platform.machine() == "arm64":
        found.append(Device(ExecutionTarget.GPU, "Apple GPU", "apple"))
        found.append(Device(ExecutionTarget.TPU, "Apple Neural Engine", "apple"))
    return tuple(found)


@functools.cache
def probe() -> Hardware:
    """This machine, probed once per process, with ``WASINN_HARDWARE`` applied on top."""
    try:
        hardware = Hardware(cpu=_probe_cpu(), accelerators=_probe_accelerators())
    except Exception as exc:  # a probe must never take the host down
        log.warning("hardware probe failed, assuming a plain CPU: %s", exc)
        hardware = Hardware(cpu=Cpu(platform.machine() or "unknown", "unknown", "unknown", 1, frozenset()))
    override = os.environ.get(HARDWARE_ENV)
    if override:
        try:
            hardware = Hardware.from_dict(json.loads(override), base=hardware)
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring %s (not valid hardware JSON): %s", HARDWARE_ENV, exc)
    return hardware
