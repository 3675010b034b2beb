"""Discovery, backend_info, the devices hook and can_handle's scores."""

from __future__ import annotations

import subprocess
import sys

import pytest
from ov_helpers import DIGITS_MODELS, new_host

import wasinn_backend_openvino as backend
from wasinn import (
    Cpu,
    Decline,
    ErrorCode,
    ExecutionTarget,
    GraphEncoding,
    Hardware,
    ModelDescription,
    ModelFormat,
    Score,
    TensorType,
    WasiNnError,
)

INTEL = Hardware(Cpu("x86_64", "intel", "Intel Xeon", 2, frozenset({"avx2", "avx512f"})))
AMD = Hardware(Cpu("x86_64", "amd", "AMD EPYC", 2, frozenset({"avx2", "avx512_bf16"})))
ARM = Hardware(Cpu("aarch64", "arm", "Neoverse", 2, frozenset({"neon"})))


def describe(fmt: ModelFormat, target: ExecutionTarget = ExecutionTarget.CPU, **config: object) -> ModelDescription:
    return ModelDescription(format=fmt, builders=(b"",), target=target, config=config)


def test_import_does_not_import_openvino() -> None:
    code = "import sys, wasinn_backend_openvino; print('openvino' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_discovered_and_available() -> None:
    with new_host() as host:
        found = host.registry.get("openvino")
    assert found is not None and found.available, found
    assert found.distribution == "wasinn-backend-openvino"
    info = found.info
    assert info is not None
    assert info.runtime == "openvino" and info.runtime_version
    assert set(info.formats) == {ModelFormat.OPENVINO_IR, ModelFormat.ONNX, ModelFormat.TFLITE}
    assert set(info.targets) == set(ExecutionTarget)
    assert {TensorType.F16, TensorType.F32, TensorType.F64, TensorType.U8, TensorType.I8, TensorType.I32,
            TensorType.I64} <= set(info.tensor_types)
    assert info.concurrent_contexts


def test_devices_on_this_cpu_only_machine() -> None:
    # This machine (and CI) has no Intel GPU or NPU, so OpenVINO reports none.
    assert backend.devices() == []


def test_devices_reports_intel_gpus_and_npus(fake_devices) -> None:
    fake_devices("CPU", "GPU.0", "GPU.1", "NPU")
    found = backend.devices()
    assert [(d.kind, d.name, d.vendor, d.source) for d in found] == [
        (ExecutionTarget.GPU, "Pretend GPU.0", "intel", "openvino"),
        (ExecutionTarget.GPU, "Pretend GPU.1", "intel", "openvino"),
        (ExecutionTarget.TPU, "Pretend NPU", "intel", "openvino"),
    ]


def score(model: ModelDescription, hw: Hardware = INTEL) -> Score:
    answer = backend.can_handle(model=model, hw=hw)
    assert isinstance(answer, Score), answer
    return answer


def decline(model: ModelDescription, hw: Hardware = INTEL) -> Decline:
    answer = backend.can_handle(model=model, hw=hw)
    assert isinstance(answer, Decline), answer
    return answer


def test_ir_scores_highest() -> None:
    for hw in (INTEL, AMD, ARM):
        answer = score(describe(ModelFormat.OPENVINO_IR), hw)
        assert answer.value == 95 and answer.device == "CPU"


@pytest.mark.parametrize("fmt", [ModelFormat.ONNX, ModelFormat.TFLITE])
def test_other_formats_on_cpus(fmt: ModelFormat) -> None:
    on_intel = score(describe(fmt), INTEL)
    assert on_intel.value == 60 and on_intel.device == "CPU"
    # Below the native runtimes' ~90 everywhere; a runner-up off Intel.
    for hw in (AMD, ARM):
        answer = score(describe(fmt), hw)
        assert 20 <= answer.value <= 30, answer
        assert f"on {hw.cpu.description}" in answer.reason and " a amd " not in answer.reason, answer


def test_unrelated_format_is_not_ours() -> None:
    assert backend.can_handle(model=describe(ModelFormat.GGUF), hw=INTEL) is None


@pytest.mark.parametrize("target", [ExecutionTarget.GPU, ExecutionTarget.TPU])
def test_missing_accelerator_declines_as_unsupported(target: ExecutionTarget) -> None:
    for fmt in (ModelFormat.OPENVINO_IR, ModelFormat.ONNX):
        answer = decline(describe(fmt, target))
        assert answer.code is ErrorCode.UNSUPPORTED_OPERATION
        assert "OpenVINO sees only CPU" in answer.reason


def test_intel_gpu_and_npu_win_for_any_format(fake_devices) -> None:
    fake_devices("CPU", "GPU", "NPU")
    gpu = score(describe(ModelFormat.ONNX, ExecutionTarget.GPU), AMD)
    assert gpu.device == "GPU" and gpu.value >= 80  # onnxruntime and LiteRT cannot use it
    npu = score(describe(ModelFormat.TFLITE, ExecutionTarget.TPU))
    assert npu.device == "NPU" and npu.value >= 80
    assert score(describe(ModelFormat.OPENVINO_IR, ExecutionTarget.GPU)).device == "GPU"


def test_auto_target(fake_devices) -> None:
    plain = score(describe(ModelFormat.ONNX, ExecutionTarget.AUTO))
    assert plain.device == "AUTO" and plain.value == 60  # nothing but the CPU to choose from
    fake_devices("CPU", "GPU")
    assert score(describe(ModelFormat.ONNX, ExecutionTarget.AUTO)).value == 80


def test_config_device_overrides_target(fake_devices) -> None:
    assert score(describe(ModelFormat.ONNX, ExecutionTarget.CPU, device="auto")).device == "AUTO"
    assert score(describe(ModelFormat.ONNX, ExecutionTarget.GPU, device="CPU")).device == "CPU"
    for device in ("GPU.1", "NPU", "HETERO:GPU,CPU"):
        answer = decline(describe(ModelFormat.ONNX, device=device))
        assert answer.code is ErrorCode.UNSUPPORTED_OPERATION and device in answer.reason
    fake_devices("CPU", "GPU.0", "GPU.1")
    assert score(describe(ModelFormat.ONNX, device="GPU.1")).device == "GPU.1"
    assert score(describe(ModelFormat.ONNX, device="GPU")).device == "GPU"
    assert score(describe(ModelFormat.ONNX, device="HETERO:GPU,CPU")).device == "HETERO:GPU,CPU"


def test_forced_load_on_a_missing_gpu_is_unsupported() -> None:
    builders = [(DIGITS_MODELS / "digits.xml").read_bytes(), (DIGITS_MODELS / "digits.bin").read_bytes()]
    with new_host() as host:
        state = host.new_state()
        with pytest.raises(WasiNnError) as caught:
            state.load(builders, GraphEncoding.OPENVINO, ExecutionTarget.GPU)
    assert caught.value.code is ErrorCode.UNSUPPORTED_OPERATION


def test_load_rechecks_the_target() -> None:
    # load is called only on a winner, but must not trust that: no silent CPU run.
    model = ModelDescription(format=ModelFormat.ONNX, builders=((DIGITS_MODELS / "digits.onnx").read_bytes(),),
                             target=ExecutionTarget.TPU)
    with pytest.raises(WasiNnError) as caught:
        backend.load(model=model, hw=INTEL)
    assert caught.value.code is ErrorCode.UNSUPPORTED_OPERATION
