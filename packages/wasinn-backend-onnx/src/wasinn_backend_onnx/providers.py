"""Which ONNX Runtime execution providers run a model, for a wasi-nn target on this hardware.

Pure Python over plain data (provider-name lists and a :class:`~wasinn.Hardware` snapshot), so the
choice can be tested without a GPU and without importing onnxruntime.

A provider in the build is not a device on the machine: ``onnxruntime-gpu`` lists
``CUDAExecutionProvider`` even where no NVIDIA GPU exists, and a session asked for
``[CUDA, CPU]`` then quietly runs on the CPU. So a GPU or NPU provider is only chosen when the
hardware snapshot also holds a matching device, and :func:`wasinn_backend_onnx.backend.load`
checks the session's active providers afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wasinn import Decline, Device, ErrorCode, ExecutionTarget, Hardware

CPU_PROVIDER = "CPUExecutionProvider"
OPENVINO_PROVIDER = "OpenVINOExecutionProvider"
#: ``Device.source`` of the devices this backend reports.
SOURCE = "onnx"
_SUFFIX = "ExecutionProvider"

#: Score for ONNX on the CPU provider, and on a GPU/NPU provider with a matching device.
CPU_SCORE = 90.0
ACCELERATOR_SCORE = 95.0


@dataclass(frozen=True, slots=True)
class ProviderKind:
    """An accelerator provider: the device kind it runs on and the device vendors it can drive
    (``None``: any vendor, e.g. DirectML drives any DirectX 12 GPU)."""

    name: str
    kind: ExecutionTarget
    vendors: frozenset[str] | None
    label: str


def _p(name: str, kind: ExecutionTarget, vendors: str | None, label: str) -> ProviderKind:
    return ProviderKind(name, kind, frozenset(vendors.split(",")) if vendors else None, label)


_GPU, _TPU = ExecutionTarget.GPU, ExecutionTarget.TPU

#: GPU providers, best first. OpenVINO's EP drives Intel GPUs with ``device_type=GPU``.
GPU_PROVIDERS: tuple[ProviderKind, ...] = (
    _p("TensorrtExecutionProvider", _GPU, "nvidia", "NVIDIA GPU"),
    _p("CUDAExecutionProvider", _GPU, "nvidia", "NVIDIA GPU"),
    _p("MIGraphXExecutionProvider", _GPU, "amd", "AMD GPU"),
    _p("ROCMExecutionProvider", _GPU, "amd", "AMD GPU"),
    _p("DmlExecutionProvider", _GPU, None, "DirectX 12 GPU"),
    _p("CoreMLExecutionProvider", _GPU, "apple", "Apple GPU"),
    _p(OPENVINO_PROVIDER, _GPU, "intel", "Intel GPU"),
    _p("WebGpuExecutionProvider", _GPU, None, "WebGPU device"),
)

#: NPU ("tpu" in wasi-nn) providers, best first.
TPU_PROVIDERS: tuple[ProviderKind, ...] = (
    _p("QNNExecutionProvider", _TPU, "qualcomm", "Qualcomm NPU"),
    _p("VitisAIExecutionProvider", _TPU, "amd", "AMD NPU"),
    _p(OPENVINO_PROVIDER, _TPU, "intel", "Intel NPU"),
    _p("CANNExecutionProvider", _TPU, "huawei", "Huawei Ascend NPU"),
    _p("RknpuExecutionProvider", _TPU, "rockchip", "Rockchip NPU"),
    _p("NnapiExecutionProvider", _TPU, None, "Android NNAPI device"),
    _p("VSINPUExecutionProvider", _TPU, None, "VeriSilicon NPU"),
)

_ORDER = {ExecutionTarget.GPU: GPU_PROVIDERS, ExecutionTarget.TPU: TPU_PROVIDERS}
#: OpenVINO's EP picks its device from the ``device_type`` option; this is ours per target.
_OPENVINO_DEVICE = {ExecutionTarget.CPU: "CPU", ExecutionTarget.GPU: "GPU", ExecutionTarget.TPU: "NPU"}
_INSTALL_HINT = {
    ExecutionTarget.GPU: "install onnxruntime-gpu (NVIDIA), onnxruntime-directml (Windows) or "
                         "onnxruntime-openvino (Intel) in place of onnxruntime",
    ExecutionTarget.TPU: "install an onnxruntime build with an NPU provider (e.g. onnxruntime-qnn)",
}


@dataclass(frozen=True, slots=True)
class Plan:
    """The providers a session is created with. ``primary`` must be active in the session, or the
    load fails: ONNX Runtime would otherwise run the model on a fallback provider."""

    providers: tuple[str, ...]
    options: tuple[dict[str, str], ...]
    primary: str
    kind: ExecutionTarget
    score: float
    reason: str


def kind_of(provider: str, options: Mapping[str, str] | None = None) -> ExecutionTarget:
    """The device kind a provider runs on (OpenVINO's EP: from its ``device_type`` option)."""
    if provider == OPENVINO_PROVIDER:
        device = str((options or {}).get("device_type", "CPU")).upper()
        return ExecutionTarget.GPU if device.startswith("GPU") else \
            ExecutionTarget.TPU if device.startswith("NPU") else ExecutionTarget.CPU
    for table in (GPU_PROVIDERS, TPU_PROVIDERS):
        for entry in table:
            if entry.name == provider:
                return entry.kind
    return ExecutionTarget.CPU  # CPU, XNNPACK, DNNL, Azure, ...


def _entry(provider: str, kind: ExecutionTarget) -> ProviderKind | None:
    return next((e for e in _ORDER.get(kind, ()) if e.name == provider), None)


def matching_device(provider: str, kind: ExecutionTarget, hw: Hardware) -> Device | None:
    """A device in ``hw`` that ``provider`` can drive as ``kind``, or ``None``.

    A device of unknown vendor (a ``WASINN_HARDWARE`` override, say) is taken at its word. Devices
    this backend listed itself (:func:`list_devices`) only stand for their own provider.
    """
    entry = _entry(provider, kind)
    if entry is None:
        return None
    for device in hw.devices(kind):
        if device.source == SOURCE and device.name != provider:
            continue
        if entry.vendors is None or device.vendor in entry.vendors or device.vendor == "unknown":
            return device
    return None


def short_name(provider: str) -> str:
    """``CUDAExecutionProvider`` → ``cuda``: the alias accepted in the ``providers`` config."""
    return provider[: -len(_SUFFIX)].lower() if provider.endswith(_SUFFIX) else provider.lower()


def _with_default_options(provider: str, options: Mapping[str, Mapping[str, str]],
                          kind: ExecutionTarget) -> dict[str, str]:
    chosen = dict(options.get(provider, {}))
    if provider == OPENVINO_PROVIDER and "device_type" not in chosen and kind in _OPENVINO_DEVICE:
        chosen["device_type"] = _OPENVINO_DEVICE[kind]
    return chosen


def _accelerator_plan(kind: ExecutionTarget, available: Sequence[str], hw: Hardware,
                      options: Mapping[str, Mapping[str, str]]) -> Plan | Decline:
    in_build = [e for e in _ORDER[kind] if e.name in available]
    for entry in in_build:
        device = matching_device(entry.name, kind, hw)
        if device is not None:
            provider_options = _with_default_options(entry.name, options, kind)
            return Plan(
                providers=(entry.name, CPU_PROVIDER),
                options=(provider_options, dict(options.get(CPU_PROVIDER, {}))),
                primary=entry.name,
                kind=kind,
                score=ACCELERATOR_SCORE,
                reason=f"ONNX Runtime on {device.name} through {entry.name}",
            )
    if not in_build:
        reason = (f"this onnxruntime build has no {kind.value.upper()} execution provider "
                  f"(it has {', '.join(available) or 'none'}); {_INSTALL_HINT[kind]}")
    else:
        wanted = "; ".join(f"no {e.label} for {e.name}" for e in in_build)
        reason = f"none of this build's {kind.value.upper()} providers has a device on this machine ({wanted})"
    return Decline(reason, ErrorCode.UNSUPPORTED_OPERATION)


def plan_providers(
    target: ExecutionTarget,
    available: Sequence[str],
    hw: Hardware,
    requested: Sequence[str] | None = None,
    options: Mapping[str, Mapping[str, str]] | None = None,
) -> Plan | Decline:
    """Choose the providers for ``target``, or decline with ``unsupported_operation``.

    ``requested`` (the ``providers`` config) replaces the default order; its first entry is the
    primary provider and must run on the requested target. ``options`` maps provider names to
    their provider options.
    """
    options = options or {}
    if requested:
        return _requested_plan(target, available, hw, list(requested), options)
    if target in (ExecutionTarget.GPU, ExecutionTarget.TPU):
        return _accelerator_plan(target, available, hw, options)
    if target is ExecutionTarget.AUTO:
        gpu = _accelerator_plan(ExecutionTarget.GPU, available, hw, options)
        if isinstance(gpu, Plan):
            return gpu
    return Plan(
        providers=(CPU_PROVIDER,),
        options=(dict(options.get(CPU_PROVIDER, {})),),
        primary=CPU_PROVIDER,
        kind=ExecutionTarget.CPU,
        score=CPU_SCORE,
        reason="ONNX Runtime on the CPU (CPUExecutionProvider)",
    )


def _requested_plan(target: ExecutionTarget, available: Sequence[str], hw: Hardware, requested: list[str],
                    options: Mapping[str, Mapping[str, str]]) -> Plan | Decline:
    missing = [p for p in requested if p not in available]
    if missing:
        return Decline(f"provider(s) {', '.join(missing)} requested by the config are not in this onnxruntime "
                       f"build (it has {', '.join(available) or 'none'})", ErrorCode.UNSUPPORTED_OPERATION)
    # OpenVINO's EP takes its device from the target unless the config names one.
    effective = target if target is not ExecutionTarget.AUTO else ExecutionTarget.CPU
    provider_options = tuple(_with_default_options(p, options, effective) for p in requested)
    primary = requested[0]
    kind = kind_of(primary, provider_options[0])
    if target is not ExecutionTarget.AUTO and kind is not target:
        return Decline(f"the target is {target.value}, but the first provider in the config, {primary}, runs on "
                       f"the {kind.value}", ErrorCode.UNSUPPORTED_OPERATION)
    if kind is ExecutionTarget.CPU:
        return Plan(tuple(requested), provider_options, primary, kind, CPU_SCORE,
                    f"ONNX Runtime on the CPU ({', '.join(requested)}, from the config)")
    device = matching_device(primary, kind, hw)
    if device is None:
        entry = _entry(primary, kind)
        label = entry.label if entry else f"{kind.value} device"
        return Decline(f"no {label} on this machine for {primary} (from the config)", ErrorCode.UNSUPPORTED_OPERATION)
    return Plan(tuple(requested), provider_options, primary, kind, ACCELERATOR_SCORE,
                f"ONNX Runtime on {device.name} through {primary} (from the config)")


def list_devices(available: Sequence[str], hw: Hardware) -> list[Device]:
    """The accelerators this build can drive on this machine, one :class:`Device` per provider.

    A vendor-specific provider is listed only when ``hw`` holds a device it can drive; a
    vendor-neutral one (DirectML, WebGPU, NNAPI) is listed on the strength of being in the build,
    since the hardware probe cannot see those devices.
    """
    found: list[Device] = []
    for table in (GPU_PROVIDERS, TPU_PROVIDERS):
        for entry in table:
            if entry.name not in available:
                continue
            device = matching_device(entry.name, entry.kind, hw)
            if device is not None:
                found.append(Device(entry.kind, entry.name, device.vendor, SOURCE))
            elif entry.vendors is None:
                found.append(Device(entry.kind, entry.name, "unknown", SOURCE))
    return found
