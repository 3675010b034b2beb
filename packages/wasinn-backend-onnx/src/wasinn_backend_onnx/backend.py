"""The ONNX Runtime backend: the hook implementations.

onnxruntime is imported lazily, in the hooks that need it, so that discovering backends stays fast.

Hot path: a context owns an ``IOBinding`` and one preallocated array per input, so ``set_input`` is
one ``np.copyto`` from guest memory into an array ONNX Runtime reads directly. Outputs whose shape
the model declares statically are preallocated and bound too, so ``compute`` allocates nothing and
``get_output`` returns a view that the core copies once into the guest. This halves the per-call
overhead of ``InferenceSession.run`` on small models (see the package README).
"""

from __future__ import annotations

import importlib
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from wasinn import (
    BackendInfo,
    Context,
    Decline,
    Device,
    ErrorCode,
    ExecutionTarget,
    Graph,
    Hardware,
    ModelDescription,
    Score,
    Tensor,
    TensorSpec,
    TensorType,
    WasiNnError,
)
from wasinn.guestlog import printable
from wasinn_backend_onnx import _info
from wasinn_backend_onnx._info import FORMATS
from wasinn_backend_onnx._info import ORT_FORMAT as ORT_FORMAT
from wasinn_backend_onnx._info import RUNTIME_DISTRIBUTIONS as RUNTIME_DISTRIBUTIONS
from wasinn_backend_onnx._info import TENSOR_TYPES as TENSOR_TYPES
from wasinn_backend_onnx._info import runtime_version as runtime_version
from wasinn_backend_onnx.config import (
    EXECUTION_MODES,
    GRAPH_OPTIMIZATION_LEVELS,
    ConfigError,
    SessionConfig,
    parse_config,
)
from wasinn_backend_onnx.providers import CPU_SCORE, Plan, list_devices, plan_providers

# What discovery needs (backend_info, detect_format and their constants) lives in ._info, so that
# listing backends does not import this module; the constants are re-exported above.

log = logging.getLogger("wasinn.onnx")

# ONNX element types wasi-nn can carry: (tensor type the guest uses, numpy dtype of the buffer).
# bool travels as u8 (0/1): wasi-nn has no boolean type.
_ONNX_TYPES: dict[str, tuple[TensorType, np.dtype[Any]]] = {
    "tensor(float16)": (TensorType.F16, np.dtype(np.float16)),
    "tensor(float)": (TensorType.F32, np.dtype(np.float32)),
    "tensor(double)": (TensorType.F64, np.dtype(np.float64)),
    "tensor(uint8)": (TensorType.U8, np.dtype(np.uint8)),
    "tensor(int8)": (TensorType.I8, np.dtype(np.int8)),
    "tensor(int32)": (TensorType.I32, np.dtype(np.int32)),
    "tensor(int64)": (TensorType.I64, np.dtype(np.int64)),
    "tensor(bool)": (TensorType.U8, np.dtype(np.bool_)),
}


def _onnxruntime() -> ModuleType:
    return importlib.import_module("onnxruntime")


# -- the arena guest models compute in -------------------------------------------------------------
# ONNX Runtime sizes a tensor from shapes the graph computes, and a guest's graph computes them from
# its own constants or from the values it sends ("ConstantOfShape" of [2^28]): no check before the run
# can know them all. What bounds it is the allocator: sessions of guest models take their CPU memory
# from one arena per process, registered with ONNX Runtime's environment, whose ``max_mem`` makes an
# allocation past it fail (the run answers too_large) before a byte is touched. Embedders' models
# keep their own per-session arenas, uncapped.
_arena_lock = threading.Lock()
#: The guest arena's cap in bytes once registered (0: registration failed), ``None`` before.
_guest_arena_cap: int | None = None
#: Graph optimizers that run a guest's nodes while the session loads, outside the capped arena.
GUEST_DISABLED_OPTIMIZERS = ("ConstantFolding",)
#: ONNX Runtime's messages when an allocation fails (the arena's cap, or the system's memory).
_OUT_OF_MEMORY = ("Available memory of", "Failed to allocate memory", "bad_alloc")


def guest_arena(ort: ModuleType, cap: int) -> int:
    """Register the capped arena for guest sessions (once per process); its cap, 0 if none."""
    global _guest_arena_cap
    with _arena_lock:
        if _guest_arena_cap is None:
            memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
            # Extend by what is asked (not to the next power of two): the arena then holds about what
            # the runs needed, never more than ``cap``.
            config = ort.OrtArenaCfg({"max_mem": cap, "arena_extend_strategy": 1})
            try:
                ort.create_and_register_allocator(memory, config)
                _guest_arena_cap = cap
                log.info("onnx: guest models compute in one arena of at most %.0f MiB (the first host's "
                         "Limits.max_runtime_bytes_per_context)", cap / (1 << 20))
            except Exception as exc:
                _guest_arena_cap = 0
                log.warning("onnx: could not register the capped arena for guest models (%s): their compute "
                            "memory is not capped", printable(str(exc)))
        return _guest_arena_cap


@dataclass(slots=True)
class GraphState:
    """What ``load`` made: the session (shared by every context) and the tensor layout."""

    session: Any
    config: SessionConfig
    plan: Plan
    input_names: tuple[str, ...]
    input_dtypes: tuple[np.dtype[Any] | None, ...]
    output_names: tuple[str, ...]
    output_dtypes: tuple[np.dtype[Any] | None, ...]
    #: Output shapes that are fully static (preallocated per context), else ``None``.
    output_shapes: tuple[tuple[int, ...] | None, ...]
    #: False when an output is not a plain tensor (a sequence, a map): such graphs use ``run``.
    bindable: bool
    #: True when inputs live on a device other than the CPU (bound inputs are copied at bind time).
    rebind_inputs: bool
    #: ``Limits.max_tensor_bytes``: no context keeps (or preallocates) an output larger than this.
    max_tensor_bytes: int = 1 << 62
    load_ms: float = 0.0


@dataclass(slots=True)
class ContextState:
    """One context: its own input arrays, output arrays and IO binding; never a new session."""

    session: Any
    binding: Any
    inputs: list[np.ndarray | None]
    #: Flat byte views of ``inputs``: assigning a guest memoryview to one is a bare memcpy.
    input_bytes: list[memoryview | None]
    outputs: list[np.ndarray | None]
    preallocated: bool
    #: Outputs ORT allocates on each run (shape not static, or preallocation refused).
    dynamic_outputs: list[str] = field(default_factory=list)
    #: The outputs of the last ``compute`` that ORT allocated, copied out of its arena (ndarrays, or
    #: the kind of an output wasi-nn cannot carry); ``None`` for preallocated ones.
    results: list[Any] | None = None
    computed: bool = False
    #: Bytes of the preallocated output arrays (charged to the context's budget as "outputs").
    preallocated_bytes: int = 0


def _spec(arg: Any) -> tuple[TensorSpec, np.dtype[Any] | None, tuple[int, ...] | None]:
    known = _ONNX_TYPES.get(arg.type)
    shape_raw = arg.shape
    shape: tuple[int | None, ...] | None
    if isinstance(shape_raw, list | tuple):
        # Symbolic ("batch") and unknown (None) dimensions are dynamic.
        shape = tuple(d if isinstance(d, int) and d >= 0 else None for d in shape_raw)
    else:
        shape = None
    static = tuple(d for d in shape if d is not None) if shape is not None and None not in shape else None
    return TensorSpec(arg.name, known[0] if known else None, shape), (known[1] if known else None), static


def _error_code(exc: Exception, *, loading: bool) -> ErrorCode:
    """The wasi-nn error for an ONNX Runtime exception (its class names its status code)."""
    kind = type(exc).__name__
    message = str(exc)
    if any(text in message for text in _OUT_OF_MEMORY):
        return ErrorCode.TOO_LARGE
    if kind in ("NotImplemented", "EPFail") or "No Op registered" in message \
            or "is not a registered function/op" in message:
        return ErrorCode.UNSUPPORTED_OPERATION
    if kind in ("InvalidProtobuf", "InvalidGraph", "InvalidArgument", "NoModel") or (loading and kind == "Fail"):
        return ErrorCode.INVALID_ARGUMENT
    return ErrorCode.RUNTIME_ERROR


def _nbytes(shape: Sequence[int], dtype: np.dtype[Any]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count * dtype.itemsize


def _describe(dtype: TensorType, shape: Sequence[int]) -> str:
    return f"{dtype.value}[{','.join(str(d) for d in shape)}]"


class OnnxBackend:
    """wasinn backend for ONNX Runtime (entry point ``onnx``)."""

    def backend_info(self) -> BackendInfo:
        return _info.backend_info()

    def detect_format(self, builders: Sequence[bytes]) -> str | None:
        return _info.detect_format(builders)

    def devices(self) -> Sequence[Device]:
        from wasinn import hardware

        return list_devices(_onnxruntime().get_available_providers(), hardware.probe())

    def _plan(self, model: ModelDescription, hw: Hardware) -> tuple[SessionConfig, Plan | Decline]:
        ort = _onnxruntime()
        config = parse_config(model.config, hw.cpu.cores, ort.get_all_providers(), model.guest_config)
        plan = plan_providers(model.target, ort.get_available_providers(), hw, config.providers,
                              config.provider_options)
        return config, plan

    def can_handle(self, model: ModelDescription, hw: Hardware) -> Score | Decline | None:
        if model.format not in FORMATS:
            return None
        try:
            _, plan = self._plan(model, hw)
        except ConfigError as exc:
            # Still the right backend for the model: claiming it lets load report the config as
            # invalid_argument, where a refusal would surface as another error (or backend).
            return Score(CPU_SCORE, f"ONNX Runtime, but load will fail: {exc}")
        if isinstance(plan, Decline):
            return plan
        return Score(plan.score, plan.reason, device=plan.primary)

    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        if len(model.builders) != 1:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"an ONNX model is one graph builder, got "
                                                          f"{len(model.builders)}")
        try:
            config, plan = self._plan(model, hw)
        except ConfigError as exc:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"onnx backend config: {exc}") from None
        if isinstance(plan, Decline):
            # Re-checked here because a forced backend skips the ranking's refusal.
            log.error("onnx: cannot load %s: %s", model.describe(), plan.reason)
            raise WasiNnError(plan.code, f"onnx backend cannot run {model.describe()}: {plan.reason}")
        unused = sorted(set(config.provider_options) - set(plan.providers))
        if unused:
            log.info("onnx: provider_options for %s ignored: the session uses %s", ", ".join(unused),
                     ", ".join(plan.providers))
        started = time.perf_counter()
        session = self._create_session(model, config, plan)
        active = session.get_providers()
        if plan.primary not in active:
            # ONNX Runtime falls back to the next provider (usually the CPU) when one fails to
            # start; running there would break the guest's request for this device.
            log.error("onnx: %s did not start for %s (active providers: %s); refusing to fall back",
                      plan.primary, model.describe(), ", ".join(active))
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION,
                              f"ONNX Runtime could not enable {plan.primary} (active providers: "
                              f"{', '.join(active)}); not running on {active[0] if active else 'another device'} "
                              f"instead of the requested {model.target.value}")
        inputs = [_spec(arg) for arg in session.get_inputs()]
        outputs = [_spec(arg) for arg in session.get_outputs()]
        limits = model.limits
        if model.from_guest:
            # An output whose shape ONNX Runtime already knows, and that no guest could be given: the
            # model can never compute, so say so now rather than after a gigabyte's run.
            for index, (spec, dtype, static) in enumerate(outputs):
                if static is not None and dtype is not None and _nbytes(static, dtype) > limits.max_tensor_bytes:
                    raise WasiNnError(ErrorCode.TOO_LARGE, f"output {index} ({spec.name!r}) is {spec.describe()}: "
                                                           f"{_nbytes(static, dtype)} bytes, over the limit of "
                                                           f"{limits.max_tensor_bytes} bytes")
        state = GraphState(
            session=session,
            config=config,
            plan=plan,
            input_names=tuple(spec.name for spec, _, _ in inputs),
            input_dtypes=tuple(dtype for _, dtype, _ in inputs),
            output_names=tuple(spec.name for spec, _, _ in outputs),
            output_dtypes=tuple(dtype for _, dtype, _ in outputs),
            output_shapes=tuple(static if dtype is not None else None for _, dtype, static in outputs),
            bindable=all(arg.type.startswith("tensor(") for arg in session.get_outputs()),
            rebind_inputs=plan.kind is not ExecutionTarget.CPU,
            max_tensor_bytes=limits.max_tensor_bytes,
            load_ms=(time.perf_counter() - started) * 1000,
        )
        log.debug("onnx: session for %s on %s in %.1f ms (%d intra-op threads, optimization %s)",
                  model.describe(), ", ".join(active), state.load_ms, config.intra_op_num_threads,
                  config.graph_optimization_level)
        return Graph(inputs=[spec for spec, _, _ in inputs], outputs=[spec for spec, _, _ in outputs],
                     device=plan.primary, state=state)

    @staticmethod
    def _create_session(model: ModelDescription, config: SessionConfig, plan: Plan) -> Any:
        ort = _onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.intra_op_num_threads
        options.inter_op_num_threads = config.inter_op_num_threads
        options.execution_mode = getattr(ort.ExecutionMode, EXECUTION_MODES[config.execution_mode])
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel,
                                                   GRAPH_OPTIMIZATION_LEVELS[config.graph_optimization_level])
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if config.allow_spinning else "0")
        # Fatal only: every error comes back as an exception (and so to the guest and the host's log,
        # escaped), while ORT's own logger writes its copy to stderr verbatim: a node name or op type
        # with a newline in it would forge a line there.
        options.log_severity_level = 4
        disabled: tuple[str, ...] = ()
        if model.from_guest:
            # Everything a guest's graph computes is computed in the capped arena, at run time: none of
            # it while loading (constant folding would run ConstantOfShape(2^28) right here).
            if guest_arena(ort, model.limits.max_runtime_bytes_per_context):
                options.add_session_config_entry("session.use_env_allocators", "1")
            disabled = GUEST_DISABLED_OPTIMIZERS
        try:
            return ort.InferenceSession(model.builders[0], sess_options=options, providers=list(plan.providers),
                                        provider_options=[dict(o) for o in plan.options],
                                        disabled_optimizers=list(disabled) or None)
        except Exception as exc:
            code = _error_code(exc, loading=True)
            message = str(exc).replace("[ONNXRuntimeError] : ", "")
            # A WasiNnError, never the bare exception: its message is escaped where it is logged.
            raise WasiNnError(code, f"ONNX Runtime cannot load {model.describe()}: {message}") from None

    def unload(self, graph: Graph) -> None:
        # Contexts hold their own reference; the session goes when the last of them does.
        state: GraphState = graph.state
        state.session = None

    def init_execution_context(self, graph: Graph) -> Context:
        state: GraphState = graph.state
        if state.session is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "the graph was unloaded")
        session = state.session
        binding = session.io_binding() if state.bindable else None
        outputs: list[np.ndarray | None] = [None] * len(state.output_names)
        count = len(state.input_names)
        context_state = ContextState(session=session, binding=binding, inputs=[None] * count,
                                     input_bytes=[None] * count, outputs=outputs, preallocated=False)
        context = Context(graph, state=context_state)
        if binding is not None:
            self._bind_outputs(state, context_state, preallocate=True)
            # The arrays are the context's for its whole life: charged now (the core moves what is
            # held here to the store's budget, and refuses the context past its limits).
            context.budget.hold("outputs", context_state.preallocated_bytes)
        return context

    @staticmethod
    def _bind_outputs(graph: GraphState, context: ContextState, *, preallocate: bool) -> None:
        """Bind every output: into a preallocated array where the model declares a static shape
        (``preallocate``) that fits ``max_tensor_bytes``, else to memory ONNX Runtime allocates per run."""
        binding = context.binding
        binding.clear_binding_outputs()
        context.preallocated = False
        context.preallocated_bytes = 0
        context.dynamic_outputs = []
        for index, name in enumerate(graph.output_names):
            shape, dtype = graph.output_shapes[index], graph.output_dtypes[index]
            if preallocate and shape is not None and dtype is not None \
                    and _nbytes(shape, dtype) <= graph.max_tensor_bytes:
                array = np.empty(shape, dtype)
                binding.bind_output(name, "cpu", 0, dtype.type, list(shape), array.ctypes.data)
                context.outputs[index] = array
                context.preallocated = True
                context.preallocated_bytes += array.nbytes
            else:
                binding.bind_output(name, "cpu")
                context.outputs[index] = None
                context.dynamic_outputs.append(name)

    def finalize_execution_context(self, context: Context) -> None:
        state: ContextState = context.state
        if state.binding is not None:
            state.binding.clear_binding_inputs()
            state.binding.clear_binding_outputs()
        state.binding = None
        state.inputs.clear()
        state.input_bytes.clear()
        state.outputs.clear()
        state.results = None
        state.session = None

    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        graph: GraphState = context.graph.state
        state: ContextState = context.state
        spec = context.graph.inputs[index]
        dtype = graph.input_dtypes[index]
        if spec.dtype is None or dtype is None:
            onnx_type = state.session.get_inputs()[index].type
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"input {index} ({spec.name!r}) is {onnx_type}, "
                                                               f"which wasi-nn tensors cannot carry")
        if tensor.dtype is not spec.dtype or not spec.accepts_shape(tensor.shape):
            got = _describe(tensor.dtype, tensor.shape)
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input {index} ({spec.name!r}) expects {spec.describe()}, "
                                                          f"got {got}")
        buffer = state.inputs[index]
        fresh = buffer is None or buffer.shape != tensor.shape
        if fresh:
            # Each input's array lives as long as the context: charged before it is allocated.
            others = sum(b.nbytes for i, b in enumerate(state.inputs) if b is not None and i != index)
            context.budget.hold("inputs", others + _nbytes(tensor.shape, dtype))
            buffer = np.empty(tensor.shape, dtype)
            state.inputs[index] = buffer
            state.input_bytes[index] = buffer.reshape(-1).data.cast("B")
        view = state.input_bytes[index]
        assert buffer is not None and view is not None
        if dtype == np.bool_:
            np.not_equal(tensor.numpy(), 0, out=buffer)  # u8 0/1 from the guest → bool, in one pass
        else:
            try:
                view[:] = tensor.data  # the one copy out of guest memory
            except (TypeError, ValueError):  # an embedder's tensor over a non-byte memoryview
                np.copyto(buffer, tensor.numpy())
        if state.binding is not None and (fresh or graph.rebind_inputs):
            # On the CPU the binding reads the array in place; an accelerator provider copies
            # the input to its device when it is bound, so there every call rebinds.
            state.binding.bind_cpu_input(graph.input_names[index], buffer)

    def compute(self, context: Context) -> None:
        graph: GraphState = context.graph.state
        state: ContextState = context.state
        missing = [f"{i} ({name!r})" for i, name in enumerate(graph.input_names) if state.inputs[i] is None]
        if missing:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input(s) {', '.join(missing)} not set")
        state.computed = False
        if state.results is not None:
            state.results = None  # the last run's outputs go now, and so does their charge
            context.budget.hold("outputs", state.preallocated_bytes)
        try:
            if state.binding is None:
                feed = dict(zip(graph.input_names, state.inputs, strict=True))
                produced: list[Any] = state.session.run(None, feed)
            else:
                produced = self._run_bound(graph, state)
        except WasiNnError:
            raise
        except Exception as exc:
            code = _error_code(exc, loading=False)
            raise WasiNnError(code, f"ONNX Runtime failed to run: {str(exc).replace('[ONNXRuntimeError] : ', '')}") \
                from None
        if state.binding is not None and not state.dynamic_outputs:
            state.computed = True  # every output is in its preallocated array, charged already
            return
        try:
            state.results = self._keep(context, graph, state, produced)
        finally:
            if state.binding is not None and state.dynamic_outputs:
                # Give ORT's buffers back to its arena now: what the context keeps is the copy.
                for name in state.dynamic_outputs:
                    state.binding.bind_output(name, "cpu")
        state.computed = True

    @staticmethod
    def _keep(context: Context, graph: GraphState, state: ContextState, produced: list[Any]) -> list[Any]:
        """What the context keeps of the outputs ORT allocated: each checked against
        ``max_tensor_bytes`` and all of them charged to the context's budget (``"outputs"``) before they
        are copied out of ORT's memory; raises ``TOO_LARGE`` (keeping nothing) past either."""
        kept: list[Any] = [None] * len(graph.output_names)
        sizes: dict[int, int] = {}
        for index, value in enumerate(produced):
            if state.binding is not None and state.outputs[index] is not None:
                continue  # a preallocated array, charged when the context was made
            dtype = graph.output_dtypes[index]
            if isinstance(value, np.ndarray):
                if value.dtype.kind in "OUSV":
                    kept[index] = _Uncarried(f"{value.dtype} tensor")
                    continue
                nbytes = value.nbytes
            elif state.binding is not None and dtype is not None:
                nbytes = _nbytes(value.shape(), dtype)
            else:
                kept[index] = _Uncarried(value.data_type() if state.binding is not None else type(value).__name__)
                continue
            if nbytes > graph.max_tensor_bytes:
                name = graph.output_names[index]
                raise WasiNnError(ErrorCode.TOO_LARGE, f"output {index} ({name!r}) is {nbytes} bytes, over the "
                                                       f"limit of {graph.max_tensor_bytes} bytes (not kept)")
            sizes[index] = nbytes
        context.budget.hold("outputs", state.preallocated_bytes + sum(sizes.values()))
        for index in sizes:
            value = produced[index]
            kept[index] = value if isinstance(value, np.ndarray) else value.numpy()
        return kept

    def _run_bound(self, graph: GraphState, state: ContextState) -> list[Any]:
        binding = state.binding
        for name in state.dynamic_outputs:
            # After a run the binding holds the output ORT allocated, and would hand that back as
            # a preallocated buffer next time, failing as soon as the shape changes.
            binding.bind_output(name, "cpu")
        try:
            state.session.run_with_iobinding(binding)
        except Exception as exc:
            if not state.preallocated:
                raise
            # A model may declare output shapes it does not produce; ORT then refuses the
            # preallocated buffers. Let ORT allocate this context's outputs from now on.
            log.debug("onnx: preallocated outputs refused (%s); binding outputs per run", printable(str(exc)))
            self._bind_outputs(graph, state, preallocate=False)
            state.session.run_with_iobinding(binding)
        if not state.dynamic_outputs:
            return [None] * len(graph.output_names)
        values: list[Any] = binding.get_outputs()
        return values

    def get_output(self, context: Context, index: int) -> np.ndarray:
        state: ContextState = context.state
        if not state.computed:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "compute has not run on this context (or it failed)")
        array = state.outputs[index] if state.binding is not None else None
        if array is not None:
            return array
        assert state.results is not None
        result = state.results[index]
        if isinstance(result, _Uncarried):
            name = context.graph.outputs[index].name
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"output {index} ({name!r}) is a {result.kind}, which "
                                                               f"wasi-nn tensors cannot carry")
        assert isinstance(result, np.ndarray)
        return result


@dataclass(frozen=True, slots=True)
class _Uncarried:
    """An output wasi-nn cannot carry (a sequence, a map, a string tensor): only its kind is kept."""

    kind: str
