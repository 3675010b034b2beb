"""The OpenVINO side: one ``Core`` per process, the devices it sees, element types and error text.

Everything here imports ``openvino`` lazily, on first use, so that importing the backend (which
``wasinn backends`` does) stays cheap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from wasinn import ExecutionTarget, TensorType

if TYPE_CHECKING:
    import openvino

log = logging.getLogger("wasinn.openvino")

_lock = threading.Lock()
_core: openvino.Core | None = None
_devices: tuple[str, ...] | None = None

#: Devices that stand for a choice among others rather than one piece of hardware.
VIRTUAL_DEVICES = frozenset({"AUTO", "MULTI", "HETERO", "BATCH"})

# OpenVINO element type name -> wasi-nn tensor type. bf16 travels as raw 16-bit words.
_TENSOR_TYPES = {
    "f16": TensorType.F16,
    "bf16": TensorType.BF16,
    "f32": TensorType.F32,
    "f64": TensorType.F64,
    "u8": TensorType.U8,
    "i8": TensorType.I8,
    "i32": TensorType.I32,
    "i64": TensorType.I64,
}
TENSOR_TYPES = tuple(_TENSOR_TYPES.values())


def core() -> openvino.Core:
    """The process's Core, made on first use (making one loads OpenVINO's plugin registry)."""
    global _core
    if _core is None:
        with _lock:
            if _core is None:
                import openvino

                _core = openvino.Core()
    return _core


def synchronous_infer(request: Any) -> Callable[[], object]:
    """The cheapest synchronous inference on ``request`` whose inputs are already in its tensors.

    ``openvino.InferRequest.infer`` is a Python wrapper around the binding's own method: with no
    inputs it still runs the input dispatcher and wraps the results in an ``OVDict``, about 10 µs per
    call, which on a small model costs more than the inference (measured by
    ``benchmarks/peer_wasmtime.py``: it was most of the gap to Wasmtime, which calls the C API). The
    binding's method (the wrapper's base class, ``openvino._pyopenvino.InferRequest``) with an empty
    input dict runs the same inference without either. Where the binding is not laid out like that,
    the public wrapper is used.
    """
    base = next((cls for cls in type(request).__mro__[1:] if cls.__module__ == "openvino._pyopenvino"
                 and cls.__name__ == "InferRequest"), None)
    raw = getattr(base, "infer", None)
    if raw is None:
        return lambda: request.infer(share_outputs=True)
    no_inputs: dict[int, Any] = {}

    def infer() -> object:
        # share_outputs: what it returns holds views, not copies (get_output reads the tensors);
        # decode_strings=False: wasi-nn has no string tensors.
        return raw(request, no_inputs, True, False)

    return infer


def available_devices() -> tuple[str, ...]:
    """What ``Core.available_devices`` reports (``CPU``, ``GPU.0``, ``NPU`` ...), asked once per process:
    it loads every device plugin, and ``can_handle`` runs at every load."""
    global _devices
    if _devices is None:
        found = tuple(core().available_devices)
        with _lock:
            _devices = found
    return _devices


def device_name(device: str) -> str:
    """The device's marketing name, or its OpenVINO name where the plugin will not say."""
    try:
        return str(core().get_property(device, "FULL_DEVICE_NAME"))
    except Exception:
        return device


def supported_properties(device: str) -> frozenset[str] | None:
    """The device's SUPPORTED_PROPERTIES; ``None`` for a virtual device or one that will not say."""
    if base_device(device) in VIRTUAL_DEVICES:
        return None
    try:
        return frozenset(str(p) for p in core().get_property(device, "SUPPORTED_PROPERTIES"))
    except Exception:
        return None


def base_device(device: str) -> str:
    """``GPU.1`` -> ``GPU``; ``AUTO:GPU,CPU`` -> ``AUTO``."""
    return device.split(":", 1)[0].split(".", 1)[0]


def device_kind(device: str) -> ExecutionTarget:
    """The wasi-nn target an OpenVINO device stands for (NPUs are wasi-nn's ``tpu``)."""
    base = base_device(device)
    if base == "GPU":
        return ExecutionTarget.GPU
    if base == "NPU":
        return ExecutionTarget.TPU
    if base in VIRTUAL_DEVICES:
        return ExecutionTarget.AUTO
    return ExecutionTarget.CPU


def tensor_type(element_type: Any) -> TensorType | None:
    """The wasi-nn type of an OpenVINO element type; ``None`` for one wasi-nn cannot express."""
    return _TENSOR_TYPES.get(element_type.get_type_name())


def message(exc: BaseException) -> str:
    """The useful part of an OpenVINO exception, whose text is a stack of "Exception from file:line"."""
    lines = [line.strip() for line in str(exc).splitlines()]
    useful = [line for line in lines if line and not line.startswith("Exception from ")
              and not (line.startswith("Check '") and line.endswith(":"))]
    return " ".join(useful) or str(exc).strip() or type(exc).__name__
