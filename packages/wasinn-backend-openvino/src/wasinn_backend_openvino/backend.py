"""The hooks: OpenVINO IR, ONNX and TFLite on OpenVINO's CPU, GPU, NPU and AUTO devices.

A graph is one ``CompiledModel`` (compiled once, in ``load``); a context is one ``InferRequest``,
which owns its input and output tensors. ``set_input`` copies the guest's bytes straight into the
request's input tensor (the only copy) and ``get_output`` returns a view of its output tensor.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wasinn import (
    Context,
    Decline,
    Device,
    ErrorCode,
    ExecutionTarget,
    Graph,
    Hardware,
    ModelDescription,
    ModelFormat,
    Score,
    Tensor,
    TensorSpec,
    TensorType,
    WasiNnError,
    isolation,
)
from wasinn.guestlog import printable
from wasinn_backend_openvino import _tflite_child, runtime
from wasinn_backend_openvino._info import FORMATS as FORMATS
from wasinn_backend_openvino._info import TARGETS as TARGETS
from wasinn_backend_openvino._info import backend_info as backend_info
from wasinn_backend_openvino.config import compile_properties, parse_settings
from wasinn_backend_openvino.onnx_guard import GuestOnnxGuard

log = logging.getLogger("wasinn.openvino")

_SUFFIX = {ModelFormat.ONNX: ".onnx", ModelFormat.TFLITE: ".tflite"}
# What each wasi-nn target asks of OpenVINO when the config names no device.
_TARGET_DEVICE = {ExecutionTarget.CPU: "CPU", ExecutionTarget.GPU: "GPU", ExecutionTarget.TPU: "NPU",
                  ExecutionTarget.AUTO: "AUTO"}

# Scores (see wasinn.hookspecs): IR is ours alone; for ONNX and TFLite we are the natural choice
# on Intel hardware, but only the runner-up to the format's own runtime elsewhere.
SCORE_IR = 95.0
SCORE_ACCELERATOR = 85.0  # an Intel GPU or NPU: the other runtimes cannot drive it
SCORE_AUTO_ACCELERATOR = 80.0
SCORE_INTEL_CPU = 60.0
SCORE_OTHER_CPU = 25.0


@dataclass(eq=False)
class CompiledGraph:
    """``Graph.state``: the compiled model, and the builders its constants may still point into."""

    compiled: Any  # openvino.CompiledModel
    builders: tuple[bytes, ...]
    #: The memory bounds of a guest's ONNX model (``None`` for every other model).
    guard: GuestOnnxGuard | None = None


@dataclass(eq=False)
class Run:
    """``Context.state``: one infer request and what the guest has done with it so far."""

    request: Any  # openvino.InferRequest
    infer: Callable[[], object]  # runtime.synchronous_infer(request)
    inputs_set: set[int] = field(default_factory=set)
    computed: bool = False
    guard: GuestOnnxGuard | None = None


# -- discovery ------------------------------------------------------------------------------------
# backend_info (and FORMATS, TARGETS) live in ._info, so that listing backends does not import this
# module; they are re-exported above.
def devices() -> Sequence[Device]:
    found = []
    for name in runtime.available_devices():
        kind = runtime.device_kind(name)
        if kind in (ExecutionTarget.GPU, ExecutionTarget.TPU):
            found.append(Device(kind, runtime.device_name(name), vendor="intel", source="openvino"))
    return found


# -- choosing a device and scoring ------------------------------------------------------------------
def choose_device(target: ExecutionTarget, configured: str | None) -> tuple[str | None, str]:
    """The OpenVINO device for a target (or the config's ``device``), or ``None`` and why not."""
    available = runtime.available_devices()
    bases = {runtime.base_device(d) for d in available}
    seen = ", ".join(available) or "no device"
    if configured is not None:
        base = runtime.base_device(configured)
        if base in runtime.VIRTUAL_DEVICES:
            _, _, listed = configured.partition(":")
            missing = [d for d in listed.split(",") if d and runtime.base_device(d) not in bases]
            if missing:
                return None, f"config device {configured}: OpenVINO sees no {', '.join(missing)} (it sees {seen})"
            return configured, f"config device {configured}"
        if configured in available or (configured == base and base in bases):
            return configured, f"config device {configured}"
        return None, f"config device {configured} is not available (OpenVINO sees {seen})"
    device = _TARGET_DEVICE[target]
    if device in runtime.VIRTUAL_DEVICES or device in bases:
        return device, f"target {target.value}"
    return None, f"target {target.value} needs an OpenVINO {device} device, and OpenVINO sees only {seen}"


def _score(model: ModelDescription, hw: Hardware, device: str) -> Score:
    kind = runtime.device_kind(device)
    if model.format == ModelFormat.OPENVINO_IR:
        return Score(SCORE_IR, "OpenVINO IR is OpenVINO's own format", device)
    fmt = model.format.value
    if kind is ExecutionTarget.GPU:
        return Score(SCORE_ACCELERATOR, f"{fmt} on an Intel GPU, which only OpenVINO can use", device)
    if kind is ExecutionTarget.TPU:
        return Score(SCORE_ACCELERATOR, f"{fmt} on an Intel NPU, which only OpenVINO can use", device)
    accelerators = [d for d in runtime.available_devices()
                    if runtime.device_kind(d) in (ExecutionTarget.GPU, ExecutionTarget.TPU)]
    if kind is ExecutionTarget.AUTO and accelerators:
        return Score(SCORE_AUTO_ACCELERATOR, f"AUTO may pick {', '.join(accelerators)}, which only OpenVINO "
                                             "can use", device)
    if hw.cpu.is_intel:
        return Score(SCORE_INTEL_CPU, f"OpenVINO reads {fmt} and is tuned for Intel CPUs (the format's own "
                                      "runtime is usually the first choice)", device)
    return Score(SCORE_OTHER_CPU, f"OpenVINO reads {fmt}, second choice to the format's own runtime on "
                                  f"{hw.cpu.description}", device)


def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline | None:
    if model.format not in FORMATS:
        return None
    configured = model.config.get("device")
    # A malformed config is load's to report (invalid_argument), not a reason to decline.
    device, reason = choose_device(model.target, configured.strip().upper()
                                   if isinstance(configured, str) and configured.strip() else None)
    if device is None:
        return Decline(reason, ErrorCode.UNSUPPORTED_OPERATION)
    return _score(model, hw, device)


# -- loading ----------------------------------------------------------------------------------------
def _read_error(model: ModelDescription, exc: BaseException) -> WasiNnError:
    text = runtime.message(exc)
    if model.from_guest and model.paths:
        # OpenVINO names the file it read: in a worker, the worker's own name for the guest's bytes
        # (a host folder the guest has no business seeing). Say "model.tflite", as the child does.
        text = text.replace(f"{model.paths[0].parent}{os.sep}", "")
    if "OpConversionFailure" in text or "translator" in text or "conversion rule" in text:
        return WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"OpenVINO cannot convert this {model.format.value} "
                                                            f"model: {text}")
    return WasiNnError(ErrorCode.INVALID_ARGUMENT, f"not a valid {model.format.value} model for OpenVINO: {text}")


def _tflite_in_child(model: ModelDescription) -> bool:
    """Whether OpenVINO must read this TFLite model in a child process (see ._tflite_child): a
    guest's bytes, by default; OpenVINO's TFLite reader has no flatbuffer verifier."""
    return model.format == ModelFormat.TFLITE and _tflite_child.wanted(trusted=not model.from_guest)


def _read_tflite(core: Any, model: ModelDescription, path: str | None) -> Any:
    if _tflite_in_child(model):
        return _tflite_child.read_in_child(core, model.builders[0], model.limits.worker_memory_bytes)
    if isolation.in_worker() and (path is None or not path.endswith(".tflite")):
        # A worker reads the guest's bytes itself (it is the throwaway process), but only through the
        # name the worker gives them: it cannot write a file, and OpenVINO reads TFLite only from
        # a path ending in ".tflite".
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, "OpenVINO reads TFLite only from a file named *.tflite, and "
                                                   "this isolated worker has none for the model")
    if path is not None:
        return core.read_model(path)
    return _read_tflite_bytes(core, model.builders[0])


def _read_tflite_bytes(core: Any, data: bytes) -> Any:
    # OpenVINO reads TFLite only from a file: a private one (mkstemp makes it 0600), gone at once.
    fd, name = tempfile.mkstemp(prefix="wasinn-ov-", suffix=".tflite")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        return core.read_model(name)
    finally:
        Path(name).unlink(missing_ok=True)


def read_model(model: ModelDescription) -> Any:
    """The model as an ``openvino.Model``; a model OpenVINO cannot read is the guest's error."""
    core = runtime.core()
    # A named model's own file: OpenVINO finds ONNX external data beside it, and TFLite needs no copy.
    path = str(model.paths[0]) if model.paths and len(model.paths) == 1 else None
    try:
        if model.format == ModelFormat.OPENVINO_IR:
            if len(model.builders) != 2:
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"OpenVINO IR needs 2 builders (XML, weights), "
                                                              f"got {len(model.builders)}")
            import openvino

            xml, weights = model.builders
            return core.read_model(xml, openvino.Tensor(np.frombuffer(weights, np.uint8)))
        if model.format == ModelFormat.TFLITE:
            return _read_tflite(core, model, path)
        if path is not None:
            return core.read_model(path)
        return core.read_model(model.builders[0])
    except RuntimeError as exc:
        raise _read_error(model, exc) from None


def content_copy(model: ModelDescription, cache_dir: Path) -> Path:
    """The model's bytes in a file named by their SHA-256, written once (atomically) under the cache.

    OpenVINO keys the blob of a model compiled from a path by that path (and its size and mtime), so
    a path that names the content makes a cache hit safe, and lets a hit skip reading the model.
    """
    data = model.builders[0]
    folder = cache_dir / "models"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = folder / f"{hashlib.sha256(data).hexdigest()}{_SUFFIX[model.format]}"
    if path.is_file() and path.stat().st_size == len(data):
        return path
    fd, name = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=path.suffix)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise
    return path


def _compile_error(exc: BaseException) -> WasiNnError:
    text = runtime.message(exc)
    code = ErrorCode.INVALID_ARGUMENT if "propert" in text.lower() else ErrorCode.RUNTIME_ERROR
    return WasiNnError(code, f"OpenVINO could not compile the model: {text}")


def compile_model(model: ModelDescription, device: str, properties: dict[str, Any],
                  cache_dir: Path | None) -> Any:
    """Compile once. With a cache dir, a later process imports the blob instead of compiling."""
    core = runtime.core()
    cache_failure: BaseException | None = None
    # Compiling from a path would read a TFLite file in this process: not one that needs the child.
    if cache_dir is not None and not _tflite_in_child(model):
        copy: Path | None = None
        try:
            cache_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if model.format == ModelFormat.OPENVINO_IR:
                # Reading IR takes milliseconds; OpenVINO keys the blob by a hash of the model.
                source: Any = read_model(model)
            else:
                # Reading ONNX or TFLite is most of the cost (0.8 s of the birds model's 1.3 s):
                # compiling from a path lets a cache hit skip it.
                copy = content_copy(model, cache_dir)
                source = str(copy)
            return core.compile_model(source, device, {**properties, "CACHE_DIR": str(cache_dir)})
        except (OSError, RuntimeError) as exc:
            # Compile again without the cache: that tells a bad model from a cache that cannot work.
            cache_failure = exc
            if copy is not None and isinstance(exc, RuntimeError):
                copy.unlink(missing_ok=True)
    ov_model = read_model(model)
    try:
        compiled = core.compile_model(ov_model, device, properties)
    except RuntimeError as exc:
        raise _compile_error(exc) from None
    if cache_failure is not None:
        log.warning("openvino: the model cache in %s did not work, compiled without it: %s", cache_dir,
                    printable(runtime.message(cache_failure)))
    return compiled


def compile_guest_onnx(model: ModelDescription, device: str, properties: dict[str, Any]) -> tuple[Any, GuestOnnxGuard]:
    """A guest's ONNX model: read, bounded (:mod:`.onnx_guard`), and only then compiled, since
    compiling constant-folds whatever the guest's graph computes from constants. (A guest's bytes
    have no model cache: ``cache_dir`` is the embedder's, for named models.)"""
    ov_model = read_model(model)
    guard = GuestOnnxGuard(ov_model, model.limits)
    try:
        compiled = runtime.core().compile_model(ov_model, device, properties)
    except RuntimeError as exc:
        raise _compile_error(exc) from None
    return compiled, guard


def _spec(port: Any, fallback: str) -> TensorSpec:
    shape = port.get_partial_shape()
    dims = None if shape.rank.is_dynamic else tuple(d.get_length() if d.is_static else None for d in shape)
    names = port.get_names()
    name = port.get_any_name() if names else fallback
    return TensorSpec(name, runtime.tensor_type(port.get_element_type()), dims)


def _loaded_from_cache(compiled: Any) -> bool:
    try:
        return bool(compiled.get_property("LOADED_FROM_CACHE"))
    except Exception:
        return False


def load(model: ModelDescription, hw: Hardware) -> Graph:
    settings = parse_settings(model.config, named=model.name is not None, guest_config=model.guest_config)
    device, reason = choose_device(model.target, settings.device)
    if device is None:
        raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, reason)
    properties = compile_properties(settings, runtime.supported_properties(device))
    started = time.perf_counter()
    guard = None
    if model.format == ModelFormat.ONNX and model.from_guest:
        compiled, guard = compile_guest_onnx(model, device, properties)
    else:
        compiled = compile_model(model, device, properties, settings.cache_dir)
    log.debug("openvino: %s compiled for %s in %.0f ms%s", model.describe(), device,
              (time.perf_counter() - started) * 1000, " (from the cache)" if _loaded_from_cache(compiled) else "")
    inputs = [_spec(port, f"input{i}") for i, port in enumerate(compiled.inputs)]
    outputs = [_spec(port, f"output{i}") for i, port in enumerate(compiled.outputs)]
    if not outputs:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "the model has no outputs")
    label = device
    if runtime.base_device(device) in runtime.VIRTUAL_DEVICES:
        try:
            label = f"{device} ({', '.join(compiled.get_property('EXECUTION_DEVICES'))})"
        except Exception:
            pass
    return Graph(inputs=inputs, outputs=outputs, device=label,
                 state=CompiledGraph(compiled, model.builders, guard))


def unload(graph: Graph) -> None:
    graph.state = None  # contexts keep their own infer requests (and through them the compiled model)


# -- running ----------------------------------------------------------------------------------------
def init_execution_context(graph: Graph) -> Context:
    state: CompiledGraph = graph.state
    request = state.compiled.create_infer_request()
    context = Context(graph, state=Run(request, runtime.synchronous_infer(request), guard=state.guard))
    if state.guard is not None:
        context.budget.hold("outputs", state.guard.static_outputs)  # the request's output tensors
    return context


def finalize_execution_context(context: Context) -> None:
    context.state = None


def set_input(context: Context, index: int, tensor: Tensor) -> None:
    inputs = context.graph.inputs
    if not 0 <= index < len(inputs):
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input index {index} out of range: the model has "
                                                      f"{len(inputs)} input(s)")
    spec = inputs[index]
    if spec.dtype is None:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input {index} ({spec.name}) has an element type that "
                                                      "wasi-nn cannot express")
    if tensor.dtype is not spec.dtype or not spec.accepts_shape(tensor.shape):
        got = f"{tensor.dtype.value}[{','.join(str(d) for d in tensor.shape)}]"
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input {index} ({spec.name}) expects {spec.describe()}, "
                                                      f"got {got}")
    run: Run = context.state
    target = run.request.get_input_tensor(index)
    if spec.shape is None or None in spec.shape:
        target.shape = list(tensor.shape)  # a dynamic input: size the request's own tensor to this one
    source = tensor.numpy()
    destination = target.data
    if destination.dtype != source.dtype:
        destination = destination.view(source.dtype)  # bf16: numpy shows it as float16; copy raw words
    destination[...] = source  # the one copy, from guest memory into the request's input tensor
    run.inputs_set.add(index)


def compute(context: Context) -> None:
    run: Run = context.state
    missing = [i for i in range(len(context.graph.inputs)) if i not in run.inputs_set]
    if missing:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input(s) {missing} not set")
    run.computed = False
    # A guest's ONNX model with dynamic inputs: sized for the shapes just set (a static one was sized
    # at load, and its outputs charged when the context was made).
    guard = run.guard if run.guard is not None and run.guard.dynamic else None
    if guard is not None:
        guard.before_infer(context, run.request, len(context.graph.inputs))
    # Synchronous infer on this thread: start_async + wait hands the request to OpenVINO's executor
    # thread and back, 50 µs more per inference (63 µs vs 10 µs for a 4-float model).
    try:
        run.infer()
    except RuntimeError as exc:
        # A WasiNnError, not the bare exception: its text (which can quote the guest's model) is
        # escaped wherever it is logged, tracebacks included.
        raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"OpenVINO failed to infer: {runtime.message(exc)}") from None
    if guard is not None:
        guard.after_infer(context, run.request, len(context.graph.outputs))
    run.computed = True


def get_output(context: Context, index: int) -> np.ndarray:
    run: Run = context.state
    outputs = context.graph.outputs
    if not 0 <= index < len(outputs):
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"output index {index} out of range: the model has "
                                                      f"{len(outputs)} output(s)")
    if not run.computed:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "compute has not run on this context")
    data: np.ndarray = run.request.get_output_tensor(index).data
    if outputs[index].dtype is TensorType.BF16:
        return data.view(TensorType.BF16.numpy_dtype)
    return data
