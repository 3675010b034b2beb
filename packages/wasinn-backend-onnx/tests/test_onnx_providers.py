"""Choosing execution providers: pure functions over provider lists and hardware snapshots, so
every GPU and NPU case is checked on any machine."""

from __future__ import annotations

import pytest

from wasinn import Cpu, Decline, Device, ErrorCode, ExecutionTarget, Hardware
from wasinn_backend_onnx.providers import (
    CPU_PROVIDER,
    Plan,
    kind_of,
    list_devices,
    matching_device,
    plan_providers,
    short_name,
)

GPU, TPU, CPU, AUTO = ExecutionTarget.GPU, ExecutionTarget.TPU, ExecutionTarget.CPU, ExecutionTarget.AUTO
CUDA, TRT, ROCM, DML = "CUDAExecutionProvider", "TensorrtExecutionProvider", "ROCMExecutionProvider", \
    "DmlExecutionProvider"
OPENVINO, QNN, XNNPACK = "OpenVINOExecutionProvider", "QNNExecutionProvider", "XnnpackExecutionProvider"
BASE = ["AzureExecutionProvider", CPU_PROVIDER]
_CPU = Cpu("x86_64", "intel", "test", 4, frozenset())


def hw(*devices: tuple[ExecutionTarget, str]) -> Hardware:
    return Hardware(cpu=_CPU, accelerators=tuple(Device(kind, f"{vendor} device", vendor) for kind, vendor in devices))


def plan(target: ExecutionTarget, available: list[str], hardware: Hardware, **kwargs: object) -> Plan:
    answer = plan_providers(target, available, hardware, **kwargs)  # type: ignore[arg-type]
    assert isinstance(answer, Plan), answer
    return answer


def decline(target: ExecutionTarget, available: list[str], hardware: Hardware, **kwargs: object) -> str:
    answer = plan_providers(target, available, hardware, **kwargs)  # type: ignore[arg-type]
    assert isinstance(answer, Decline), answer
    assert answer.code is ErrorCode.UNSUPPORTED_OPERATION
    return answer.reason


def test_cpu_target() -> None:
    chosen = plan(CPU, BASE, hw())
    assert chosen.providers == (CPU_PROVIDER,)
    assert chosen.primary == CPU_PROVIDER
    assert chosen.score == 90
    # A GPU in the build and on the machine does not move a CPU request.
    assert plan(CPU, [CUDA, *BASE], hw((GPU, "nvidia"))).primary == CPU_PROVIDER


def test_gpu_provider_with_matching_gpu() -> None:
    chosen = plan(GPU, [CUDA, *BASE], hw((GPU, "nvidia")))
    assert chosen.providers == (CUDA, CPU_PROVIDER)  # the CPU runs the operators CUDA lacks
    assert chosen.primary == CUDA
    assert chosen.score == 95
    assert "nvidia device" in chosen.reason


def test_gpu_preference_order() -> None:
    nvidia = hw((GPU, "nvidia"))
    assert plan(GPU, [CUDA, TRT, *BASE], nvidia).primary == TRT
    assert plan(GPU, [DML, CUDA, *BASE], nvidia).primary == CUDA
    assert plan(GPU, [ROCM, CUDA, *BASE], hw((GPU, "amd"))).primary == ROCM
    assert plan(GPU, [CUDA, DML, *BASE], hw((GPU, "amd"))).primary == DML  # DirectML drives any GPU


def test_gpu_declines() -> None:
    assert "no GPU execution provider" in decline(GPU, BASE, hw((GPU, "nvidia")))
    assert "onnxruntime-gpu" in decline(GPU, BASE, hw())
    reason = decline(GPU, [CUDA, *BASE], hw())
    assert "no NVIDIA GPU for CUDAExecutionProvider" in reason
    assert "no NVIDIA GPU for CUDAExecutionProvider" in decline(GPU, [CUDA, *BASE], hw((GPU, "amd")))
    assert "no DirectX 12 GPU for DmlExecutionProvider" in decline(GPU, [DML, *BASE], hw())


def test_device_of_unknown_vendor_is_believed() -> None:
    assert plan(GPU, [CUDA, *BASE], hw((GPU, "unknown"))).primary == CUDA


def test_openvino_provider_gets_its_device_from_the_target() -> None:
    chosen = plan(GPU, [OPENVINO, *BASE], hw((GPU, "intel")))
    assert chosen.primary == OPENVINO
    assert chosen.options[0] == {"device_type": "GPU"}
    npu = plan(TPU, [OPENVINO, *BASE], hw((TPU, "intel")))
    assert npu.options[0] == {"device_type": "NPU"}
    assert kind_of(OPENVINO, {"device_type": "GPU.1"}) is GPU
    assert kind_of(OPENVINO) is CPU


def test_tpu_target() -> None:
    assert "no TPU execution provider" in decline(TPU, BASE, hw((TPU, "intel")))
    assert plan(TPU, [QNN, *BASE], hw((TPU, "qualcomm"))).primary == QNN
    assert "Qualcomm NPU" in decline(TPU, [QNN, *BASE], hw((GPU, "nvidia")))


def test_auto_target_prefers_a_usable_gpu() -> None:
    assert plan(AUTO, [CUDA, *BASE], hw((GPU, "nvidia"))).primary == CUDA
    assert plan(AUTO, [CUDA, *BASE], hw()).primary == CPU_PROVIDER
    assert plan(AUTO, BASE, hw()).kind is CPU


def test_requested_providers() -> None:
    chosen = plan(CPU, [XNNPACK, *BASE], hw(), requested=[XNNPACK, CPU_PROVIDER])
    assert chosen.providers == (XNNPACK, CPU_PROVIDER)
    assert chosen.primary == XNNPACK
    gpu = plan(GPU, [CUDA, *BASE], hw((GPU, "nvidia")), requested=[CUDA],
               options={CUDA: {"device_id": "1"}})
    assert gpu.providers == (CUDA,)
    assert gpu.options == ({"device_id": "1"},)
    assert "runs on the cpu" in decline(GPU, [CUDA, *BASE], hw((GPU, "nvidia")), requested=[CPU_PROVIDER, CUDA])
    assert "runs on the gpu" in decline(CPU, [CUDA, *BASE], hw((GPU, "nvidia")), requested=[CUDA])
    assert "not in this onnxruntime build" in decline(GPU, BASE, hw((GPU, "nvidia")), requested=[CUDA])
    assert "no NVIDIA GPU on this machine" in decline(GPU, [CUDA, *BASE], hw(), requested=[CUDA])
    assert plan(AUTO, [CUDA, *BASE], hw((GPU, "nvidia")), requested=[CUDA]).kind is GPU


def test_our_own_device_listing_stands_only_for_its_provider() -> None:
    listed = Hardware(cpu=_CPU, accelerators=(Device(GPU, DML, "unknown", "onnx"),))
    assert matching_device(DML, GPU, listed) is not None
    assert matching_device(CUDA, GPU, listed) is None  # DirectML's entry is no NVIDIA GPU


def test_list_devices() -> None:
    assert list_devices(BASE, hw((GPU, "nvidia"))) == []
    assert list_devices([CUDA, TRT, *BASE], hw()) == []
    assert list_devices([CUDA, TRT, *BASE], hw((GPU, "nvidia"))) == [
        Device(GPU, TRT, "nvidia", "onnx"), Device(GPU, CUDA, "nvidia", "onnx")]
    assert list_devices([DML, *BASE], hw()) == [Device(GPU, DML, "unknown", "onnx")]
    assert list_devices([QNN, *BASE], hw((TPU, "qualcomm"))) == [Device(TPU, QNN, "qualcomm", "onnx")]


@pytest.mark.parametrize(("provider", "alias"), [(CUDA, "cuda"), (TRT, "tensorrt"), (CPU_PROVIDER, "cpu"),
                                                 ("JsExecutionProvider", "js")])
def test_short_names(provider: str, alias: str) -> None:
    assert short_name(provider) == alias
