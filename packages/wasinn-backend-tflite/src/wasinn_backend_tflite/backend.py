"""The TFLite backend's hooks: LiteRT or tflite-runtime behind wasinn's backend contract.

Design:

* ``can_handle`` verifies the flatbuffer in pure Python (:mod:`._verify`) without importing the
  runtime, so malformed or hostile bytes never reach the interpreter, and declines models it cannot
  run (custom ops, targets without a delegate).
* ``load`` builds one interpreter, which proves the model loads and gives the tensor details; the
  graph keeps the model bytes.
* A running context holds an interpreter (they are not thread-safe, and one interpreter holds one set
  of input/output buffers), built from the graph's shared bytes (``model_content=``, no copy). Each
  interpreter costs megabytes, so a graph keeps at most ``max_interpreters`` and idle contexts give
  theirs up to running ones, their tensors saved and restored (:class:`GraphState`). Contexts
  therefore run concurrently, and 100 idle stores do not cost 100 interpreters.
* ``set_input`` copies the guest's bytes once, straight into the interpreter's input buffer;
  ``get_output`` returns a view of the output buffer, which the core copies once into the guest.
"""

from __future__ import annotations

import ctypes
import logging
import math
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from wasinn import (
    BackendInfo,
    Context,
    Decline,
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
)
from wasinn_backend_tflite import _info, _runtime
from wasinn_backend_tflite._info import TENSOR_TYPES as TENSOR_TYPES

if TYPE_CHECKING:
    from wasinn_backend_tflite._verify import ModelInfo

log = logging.getLogger("wasinn.tflite")

SCORE = 90.0
#: Custom ops that the builtin op resolver of both runtimes registers.
BUILTIN_CUSTOM_OPS = frozenset({"TFLite_Detection_PostProcess"})
EDGETPU_OP = "edgetpu-custom-op"
#: Outputs up to this size are copied out of the interpreter; larger ones are returned as views.
SMALL_OUTPUT = 16 * 1024
CONFIG_KEYS = ("num_threads", "max_interpreters", "xnnpack", "delegate", "delegate_options")

_TYPES: dict[np.dtype[Any], TensorType] = {
    np.dtype(np.float16): TensorType.F16,
    np.dtype(np.float32): TensorType.F32,
    np.dtype(np.float64): TensorType.F64,
    np.dtype(np.uint8): TensorType.U8,
    np.dtype(np.int8): TensorType.I8,
    np.dtype(np.int32): TensorType.I32,
    np.dtype(np.int64): TensorType.I64,
}


# -- configuration -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Options:
    """A model's config, checked."""

    num_threads: int
    #: Interpreters a graph keeps for its contexts before they start sharing (see GraphState).
    max_interpreters: int = 2
    xnnpack: bool = True
    delegate: _runtime.Delegate | None = None
    delegate_options: Mapping[str, str] = field(default_factory=dict)

    def device(self) -> str:
        if self.delegate is not None:
            return f"{self.delegate.kind} ({self.delegate.label})"
        kernels = "XNNPACK" if self.xnnpack else "builtin kernels"
        return f"cpu ({kernels}, {self.num_threads} thread{'s' if self.num_threads != 1 else ''})"


def _invalid(message: str) -> WasiNnError:
    return WasiNnError(ErrorCode.INVALID_ARGUMENT, message)


def _count(config: Mapping[str, Any], key: str, default: int) -> int:
    value = config.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1024:
        raise _invalid(f"config {key} must be an integer from 1 to 1024, not {value!r}")
    return value


def parse_options(config: Mapping[str, Any], target: ExecutionTarget, hw: Hardware) -> Options:
    """Check the config keys and choose the delegate for ``target``; WasiNnError if impossible."""
    unknown = sorted(set(config) - set(CONFIG_KEYS))
    if unknown:
        raise _invalid(f"unknown tflite config key(s) {', '.join(unknown)} (known: {', '.join(CONFIG_KEYS)})")
    threads = _count(config, "num_threads", max(1, hw.cpu.cores))
    interpreters = _count(config, "max_interpreters", max(1, hw.cpu.cores))
    xnnpack = config.get("xnnpack", True)
    if not isinstance(xnnpack, bool):
        raise _invalid(f"config xnnpack must be true or false, not {xnnpack!r}")
    raw_options = config.get("delegate_options", {})
    if not isinstance(raw_options, Mapping) or not all(
            isinstance(v, str | int | float | bool) for v in raw_options.values()):
        raise _invalid("config delegate_options must be an object of strings, numbers or booleans")
    delegate_options = {str(k): (str(v).lower() if isinstance(v, bool) else str(v)) for k, v in raw_options.items()}

    wanted = config.get("delegate")
    delegate = None
    if wanted is not None:
        if not isinstance(wanted, str) or not wanted:
            raise _invalid(f"config delegate must be a library path or name, not {wanted!r}")
        delegate = _runtime.find_delegate(wanted)
        if delegate is None:
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION,
                              f"delegate {wanted!r} is not allowed on this host (the host lists trusted "
                              f"delegate libraries in {_runtime.DELEGATES_ENV})")
    elif target in (ExecutionTarget.GPU, ExecutionTarget.TPU):
        kind = target.value
        delegate = next((d for d in _runtime.allowed_delegates() if d.kind == kind), None)
        if delegate is None:
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION,
                              f"no TFLite {kind.upper()} delegate is available (list one in "
                              f"{_runtime.DELEGATES_ENV}, e.g. {kind}=/path/to/delegate.so)")
    if delegate is not None and target in (ExecutionTarget.GPU, ExecutionTarget.TPU) \
            and delegate.kind != target.value:
        raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION,
                          f"delegate {delegate.label} serves {delegate.kind}, not the requested {target.value}")
    return Options(threads, interpreters, xnnpack, delegate, delegate_options)


# -- model verification (cached between can_handle and load) --------------------------------------
class _VerifyCache:
    """Recent verification results, keyed by the identity of the model's bytes: ``can_handle`` and
    then ``load`` see the same ``bytes`` object, so the model is walked once. ``load`` takes its
    entry out; the few left (models scored but loaded elsewhere) are all the cache keeps alive.

    Only models that passed are kept, as a :class:`ModelInfo` (plain data). A refusal is not: a
    refused model is declined, so no ``load`` follows to share the walk with, and a cached exception
    would keep its traceback, whose frames hold the caller's store (its graphs and contexts) alive
    after the embedder closed it.
    """

    def __init__(self, size: int = 4) -> None:
        self.size = size
        self.entries: list[tuple[bytes, ModelInfo]] = []
        self.lock = threading.Lock()

    def verify(self, data: bytes, *, consume: bool = False) -> ModelInfo:
        """The model's :class:`ModelInfo`; raises a new :class:`ModelError` each time it is refused."""
        # Imported here: the schema tables are only needed once a model arrives.
        from wasinn_backend_tflite._verify import verify

        with self.lock:
            position = next((i for i, (held, _) in enumerate(self.entries) if held is data), None)
            result = None if position is None else self.entries[position][1]
            if position is not None and consume:
                del self.entries[position]
        if result is None:
            result = verify(data)
            if not consume:
                with self.lock:
                    self.entries.append((data, result))
                    del self.entries[:-self.size]
        return result


_verified = _VerifyCache()


def _model_info(model: ModelDescription, *, consume: bool = False) -> ModelInfo:
    from wasinn_backend_tflite._verify import ModelError

    if len(model.builders) != 1:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"a TFLite model is one graph builder, not {len(model.builders)}")
    try:
        return _verified.verify(model.builders[0], consume=consume)
    except ModelError as exc:
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"malformed TFLite model: {exc}") from None
    except Exception as exc:  # a verifier bug: fail closed, the bytes are refused all the same
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"malformed TFLite model: the verifier failed on it "
                                                      f"({type(exc).__name__}: {exc})") from None


def _unsupported_ops(info: ModelInfo, options: Options) -> str | None:
    missing = sorted(info.custom_ops - BUILTIN_CUSTOM_OPS)
    if EDGETPU_OP in missing and options.delegate is not None and options.delegate.kind == "tpu":
        missing.remove(EDGETPU_OP)  # the Edge TPU delegate runs it
    if not missing:
        return None
    flex = [op for op in missing if op.startswith("Flex")]
    if flex:
        return f"needs TensorFlow ops ({', '.join(flex)}), which need the Flex delegate that no runtime here has"
    if EDGETPU_OP in missing:
        return "compiled for the Edge TPU, which needs the Edge TPU runtime (libedgetpu) and target tpu"
    return f"uses custom op(s) {', '.join(missing)} that the TFLite builtin op resolver does not have"


# -- graph and context state ---------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Port:
    """A model input or output as the interpreter sees it."""

    tensor: int  # the interpreter's tensor index
    name: str
    dtype: np.dtype[Any]
    kind: TensorType | None
    shape: tuple[int, ...]
    signature: tuple[int, ...]
    nbytes: int  # at the allocated shape; unbounded (sys.maxsize) for a dynamic tensor, which can grow

    @property
    def dynamic(self) -> bool:
        return any(d < 0 for d in self.signature)

    def spec(self) -> TensorSpec:
        return TensorSpec(self.name, self.kind, tuple(None if d < 0 else d for d in self.signature))

    def describe(self) -> str:
        kind = self.kind.value if self.kind else str(self.dtype)
        return f"{kind}[{','.join('?' if d < 0 else str(d) for d in self.signature)}]"

    @staticmethod
    def from_details(details: Mapping[str, Any]) -> Port:
        dtype = np.dtype(details["dtype"])
        shape = tuple(int(d) for d in details["shape"])
        signature = details.get("shape_signature")
        sig = tuple(int(d) for d in signature) if signature is not None and len(signature) == len(shape) else shape
        nbytes = sys.maxsize if any(d < 0 for d in sig) else math.prod(shape) * dtype.itemsize
        return Port(int(details["index"]), str(details["name"]), dtype, _TYPES.get(dtype), shape, sig, nbytes)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


_UNSUPPORTED_MARKERS = ("Didn't find op", "builtin_code out of range", "unresolved custom op",
                        "Registration failed", "Op type not registered")


def _load_error(stage: str, exc: BaseException) -> WasiNnError:
    text = str(exc)
    if any(marker in text for marker in _UNSUPPORTED_MARKERS):
        return WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"the TFLite interpreter cannot run this model: "
                                                            f"{_first_line(exc)}")
    return WasiNnError(ErrorCode.INVALID_ARGUMENT, f"the TFLite interpreter rejected the model ({stage}): "
                                                   f"{_first_line(exc)}")


def _check_delegate_library(delegate: _runtime.Delegate) -> None:
    """The library must exist and export the external-delegate entry points (else the runtime's
    Delegate wrapper fails half-built and complains again from its finalizer)."""
    try:
        library = ctypes.CDLL(delegate.library)
    except OSError as exc:
        raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"cannot load TFLite delegate {delegate.library}: "
                                                           f"{exc}") from None
    for symbol in ("tflite_plugin_create_delegate", "tflite_plugin_destroy_delegate"):
        if not hasattr(library, symbol):
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"cannot load TFLite delegate {delegate.library}: "
                                                               f"it does not export {symbol}")


@dataclass(eq=False, slots=True)
class Slot:
    """An interpreter and the input shapes its tensors are allocated for."""

    interpreter: Any
    shapes: list[tuple[int, ...]]


class GraphState:
    """What a loaded graph shares with its contexts: the model bytes and a bounded set of interpreters.

    A context leases an interpreter when it first needs one (``set_input`` or ``compute``) and keeps it
    while it runs. When every interpreter is leased and another context needs one, the graph takes it
    from the context that leased longest ago and is not running right now: that context's inputs (and
    outputs, if computed) are saved as arrays it owns, and put back when it next leases. So idle contexts
    (one per store, typically) cost their tensors' bytes, not an interpreter each.
    """

    def __init__(self, data: bytes, api: _runtime.Api, options: Options) -> None:
        self.data = data
        self.api = api
        self.options = options
        self.idle: list[Slot] = []
        #: Contexts holding a slot, in the order they leased it (the first is the next to give one up).
        self.holders: dict[ContextState, None] = {}
        self.interpreters = 0  # alive: idle + leased
        self.lock = threading.Lock()
        self.inputs: list[Port] = []
        self.outputs: list[Port] = []
        self.unloaded = False

    def build(self) -> Any:
        """A new interpreter for this graph, tensors allocated."""
        api, options = self.api, self.options
        kwargs: dict[str, Any] = {"model_content": self.data, "num_threads": options.num_threads}
        if not options.xnnpack or options.delegate is not None:
            # With an explicit delegate, XNNPACK must not take the nodes first.
            kwargs["experimental_op_resolver_type"] = api.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        if options.delegate is not None:
            _check_delegate_library(options.delegate)
            try:
                kwargs["experimental_delegates"] = [api.load_delegate(options.delegate.library,
                                                                      dict(options.delegate_options))]
            except (ValueError, OSError, AttributeError, RuntimeError) as exc:
                message = f"cannot load TFLite delegate {options.delegate.library}: {_first_line(exc)}"
                raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, message) from None
        try:
            interpreter = api.Interpreter(**kwargs)
        except (ValueError, RuntimeError) as exc:
            raise _load_error("building", exc) from None
        if options.delegate is not None and not any(
                op.get("op_name") == "DELEGATE" for op in interpreter._get_ops_details()):
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION,
                              f"delegate {options.delegate.label} took none of the model's operators; "
                              f"refusing to run it on the CPU instead")
        try:
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise _load_error("allocating tensors", exc) from None
        return interpreter

    def model_shapes(self) -> list[tuple[int, ...]]:
        return [port.shape for port in self.inputs]

    def lease(self, ctx: ContextState) -> Slot:
        """A slot for ``ctx`` (whose own lock the caller holds), with ``ctx``'s saved tensors put back."""
        slot = None
        with self.lock:
            if self.idle:
                slot = self.idle.pop()
            elif self.interpreters >= self.options.max_interpreters:
                slot = self._take_from_another(ctx)
            if slot is None:
                self.interpreters += 1  # reserved now; built below, outside the lock
        if slot is None:
            try:
                slot = Slot(self.build(), self.model_shapes())
            except BaseException:
                with self.lock:
                    self.interpreters -= 1
                raise
        try:
            _restore(self, ctx, slot)
        except BaseException:
            self._drop(slot)
            raise
        with self.lock:
            self.holders[ctx] = None
        ctx.slot = slot
        return slot

    def _take_from_another(self, thief: ContextState) -> Slot | None:
        """The slot of the longest-holding context that is not busy (state lock held); None if none is."""
        for victim in list(self.holders):
            if victim is thief or not victim.lock.acquire(blocking=False):
                continue  # running now (or is us): never wait here, that could deadlock
            try:
                slot = victim.slot
                if slot is None or not slot.interpreter._safe_to_run():
                    continue  # someone still holds a view of its buffers
                _save(self, victim, slot)
                victim.slot = None
                del self.holders[victim]
                log.debug("tflite: context moved off its interpreter to serve another (%d interpreters)",
                          self.interpreters)
                return slot
            finally:
                victim.lock.release()
        return None  # every holder is busy: the caller builds one more rather than wait

    def release(self, ctx: ContextState, slot: Slot | None) -> None:
        """``ctx`` is finalized: keep its interpreter for the next context, when that is safe."""
        with self.lock:
            self.holders.pop(ctx, None)
        if slot is None:
            return
        interpreter = slot.interpreter
        if self.unloaded or not interpreter._safe_to_run():
            self._drop(slot)  # a view of its buffers is still alive: let it go with them
            return
        try:
            interpreter.reset_all_variables()
        except (ValueError, RuntimeError):
            self._drop(slot)
            return
        with self.lock:
            if self.interpreters <= self.options.max_interpreters:
                self.idle.append(slot)
                return
        self._drop(slot)  # one built beyond the limit while every holder was busy

    def _drop(self, slot: Slot) -> None:
        with self.lock:
            self.interpreters -= 1


def _save(state: GraphState, ctx: ContextState, slot: Slot) -> None:
    """Copy ``ctx``'s tensors out of ``slot`` so the interpreter can serve another context."""
    interpreter = slot.interpreter
    ctx.saved_inputs = {i: interpreter.get_tensor(port.tensor)
                        for i, port in enumerate(state.inputs) if ctx.is_set[i]}
    if ctx.computed and ctx.saved_outputs is None:
        ctx.saved_outputs = [interpreter.get_tensor(port.tensor) for port in state.outputs]
        for output in ctx.saved_outputs:
            output.flags.writeable = False  # handed out by get_output, possibly more than once


def _restore(state: GraphState, ctx: ContextState, slot: Slot) -> None:
    """Allocate ``slot`` for ``ctx``'s input shapes and put back the inputs it had set."""
    interpreter = slot.interpreter
    if slot.shapes != ctx.shapes:
        try:
            for port, shape, current in zip(state.inputs, ctx.shapes, slot.shapes, strict=True):
                if shape != current:
                    interpreter.resize_tensor_input(port.tensor, list(shape), strict=True)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"cannot reallocate an interpreter for this context: "
                                                       f"{_first_line(exc)}") from None
        slot.shapes = list(ctx.shapes)
    for i, data in ctx.saved_inputs.items():
        interpreter.set_tensor(state.inputs[i].tensor, data)
    ctx.saved_inputs = {}


@dataclass(eq=False, slots=True)
class ContextState:
    """One context: the input shapes it uses, what was set, and its interpreter while it holds one.

    While the context has no interpreter, ``saved_inputs`` and ``saved_outputs`` hold its tensors.
    """

    shapes: list[tuple[int, ...]]
    is_set: list[bool]
    slot: Slot | None = None
    computed: bool = False
    finalized: bool = False
    saved_inputs: dict[int, np.ndarray] = field(default_factory=dict)
    saved_outputs: list[np.ndarray] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


def _describe(dtype: TensorType, shape: Sequence[int]) -> str:
    return f"{dtype.value}[{','.join(str(d) for d in shape)}]"


# -- the backend ---------------------------------------------------------------------------------
class TFLiteBackend:
    """The hooks. The entry point names the package, whose hook functions hand each call to one instance."""

    def backend_info(self) -> BackendInfo:
        return _info.backend_info()

    def can_handle(self, model: ModelDescription, hw: Hardware) -> Score | Decline | None:
        if model.format != ModelFormat.TFLITE:
            return None
        # The file first, whatever the config or target: a file the verifier refuses is malformed
        # for TFLite, and that ends the ranking (no runner-up without a verifier is handed it).
        try:
            info = _model_info(model)
        except WasiNnError as exc:
            return Decline(exc.message, exc.code, malformed=True)
        try:
            options = parse_options(model.config, model.target, hw)
        except WasiNnError as exc:
            return Decline(exc.message, exc.code)
        problem = _unsupported_ops(info, options)
        if problem is not None:
            return Decline(problem, ErrorCode.UNSUPPORTED_OPERATION)
        runtime = _runtime.select()
        name = runtime.distribution if isinstance(runtime, _runtime.Runtime) else "TFLite"
        ops = f"{info.operators} operator{'s' if info.operators != 1 else ''}"
        if options.delegate is not None:
            value = 100.0 if EDGETPU_OP in info.custom_ops else SCORE
            return Score(value, f"{name} with the {options.delegate.label} delegate ({ops})", device=options.device())
        return Score(SCORE, f"{name} runs TFLite natively on the CPU ({ops})", device=options.device())

    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        runtime = _runtime.select()
        if isinstance(runtime, str):
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, runtime)
        options = parse_options(model.config, model.target, hw)
        info = _model_info(model, consume=True)
        problem = _unsupported_ops(info, options)
        if problem is not None:
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, problem)
        started = time.perf_counter()
        # Bytes from the guest's load() (no name) are untrusted: try them in a child process first.
        from wasinn_backend_tflite import _probe

        if _probe.wanted(trusted=model.name is not None):
            _probe.probe(model.builders[0], runtime.module, options.num_threads,
                         options.xnnpack and options.delegate is None, model.limits.worker_memory_bytes)
        state = GraphState(model.builders[0], _runtime.api(runtime), options)
        first = state.build()
        state.inputs = [Port.from_details(d) for d in first.get_input_details()]
        state.outputs = [Port.from_details(d) for d in first.get_output_details()]
        state.idle.append(Slot(first, state.model_shapes()))  # the first context gets it for free
        state.interpreters = 1
        log.debug("tflite: built %s interpreter in %.1f ms (%s)", runtime.distribution,
                  (time.perf_counter() - started) * 1000, options.device())
        return Graph(inputs=[p.spec() for p in state.inputs], outputs=[p.spec() for p in state.outputs],
                     device=options.device(), state=state)

    def unload(self, graph: Graph) -> None:
        state: GraphState = graph.state
        with state.lock:
            state.unloaded = True
            state.interpreters -= len(state.idle)
            state.idle.clear()

    def init_execution_context(self, graph: Graph) -> Context:
        state: GraphState = graph.state
        # No interpreter yet: the context leases one when it first sets an input.
        return Context(graph, state=ContextState(state.model_shapes(), [False] * len(state.inputs)))

    def finalize_execution_context(self, context: Context) -> None:
        ctx: ContextState = context.state
        with ctx.lock:
            slot, ctx.slot = ctx.slot, None
            ctx.finalized = True
            ctx.saved_inputs, ctx.saved_outputs = {}, None
        context.graph.state.release(ctx, slot)

    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        state: GraphState = context.graph.state
        ctx: ContextState = context.state
        if not 0 <= index < len(state.inputs):
            raise _invalid(f"input index {index} out of range: the model has {len(state.inputs)} input(s)")
        port = state.inputs[index]
        shape = tensor.shape
        # Fast path: the type and the shape the interpreter is allocated for (always acceptable).
        if tensor.dtype is not port.kind or shape != ctx.shapes[index]:
            self._check_input(port, index, tensor)
        with ctx.lock:
            interpreter = self._interpreter(state, ctx)
            if shape != ctx.shapes[index]:
                self._resize(state, ctx, interpreter, index, shape)
            try:
                # One copy, from the guest's memory into the interpreter's input buffer.
                interpreter.set_tensor(port.tensor, tensor.numpy())
            except ValueError as exc:
                raise _invalid(f"input {index} ({port.name}): {_first_line(exc)}") from None
            ctx.is_set[index] = True
            ctx.computed = False
            ctx.saved_outputs = None

    @staticmethod
    def _check_input(port: Port, index: int, tensor: Tensor) -> None:
        shape = tensor.shape
        if tensor.dtype is not port.kind or len(shape) != len(port.signature) or any(
                want >= 0 and want != got for want, got in zip(port.signature, shape, strict=True)):
            raise _invalid(f"input {index} ({port.name}) expects {port.describe()}, "
                           f"got {_describe(tensor.dtype, shape)}")

    @staticmethod
    def _check_open(ctx: ContextState) -> None:
        if ctx.finalized:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "this execution context was finalized")

    @classmethod
    def _interpreter(cls, state: GraphState, ctx: ContextState) -> Any:
        """The context's interpreter, leased now if it has none (its lock held)."""
        cls._check_open(ctx)
        slot = ctx.slot if ctx.slot is not None else state.lease(ctx)
        return slot.interpreter

    @staticmethod
    def _resize(state: GraphState, ctx: ContextState, interpreter: Any, index: int, shape: tuple[int, ...]) -> None:
        """Reallocate for a new dynamic input shape, keeping the other inputs' data."""
        if not interpreter._safe_to_run():
            raise WasiNnError(ErrorCode.BUSY, "an output view of this context is still referenced; "
                                              "copy it before changing input shapes")
        # allocate_tensors may move every buffer: save what was already set.
        kept = {i: interpreter.get_tensor(p.tensor) for i, p in enumerate(state.inputs) if ctx.is_set[i] and i != index}
        try:
            interpreter.resize_tensor_input(state.inputs[index].tensor, list(shape), strict=True)
            interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            # Put the interpreter back the way it was, so the context stays usable.
            ctx.is_set[index] = False
            try:
                interpreter.resize_tensor_input(state.inputs[index].tensor, list(ctx.shapes[index]), strict=True)
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError):
                ctx.is_set = [False] * len(ctx.is_set)
            raise _invalid(f"input {index} ({state.inputs[index].name}): the model cannot take shape "
                           f"{list(shape)}: {_first_line(exc)}") from None
        ctx.shapes[index] = shape
        if ctx.slot is not None:
            ctx.slot.shapes = list(ctx.shapes)
        for i, data in kept.items():
            interpreter.set_tensor(state.inputs[i].tensor, data)

    def compute(self, context: Context) -> None:
        state: GraphState = context.graph.state
        ctx: ContextState = context.state
        with ctx.lock:
            self._check_open(ctx)
            if not all(ctx.is_set):
                missing = [i for i, done in enumerate(ctx.is_set) if not done]
                names = ", ".join(f"{i} ({state.inputs[i].name})" for i in missing)
                raise _invalid(f"input(s) {names} not set")
            interpreter = self._interpreter(state, ctx)
            if not interpreter._safe_to_run():
                raise WasiNnError(ErrorCode.BUSY, "an output view of this context is still referenced; "
                                                  "copy it before the next compute")
            try:
                interpreter.invoke()  # releases the GIL
            except (ValueError, RuntimeError) as exc:
                raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"TFLite invoke failed: {_first_line(exc)}") from None
            ctx.computed = True
            ctx.saved_outputs = None

    def get_output(self, context: Context, index: int) -> np.ndarray:
        state: GraphState = context.graph.state
        ctx: ContextState = context.state
        if not 0 <= index < len(state.outputs):
            raise _invalid(f"output index {index} out of range: the model has {len(state.outputs)} output(s)")
        with ctx.lock:
            self._check_open(ctx)
            if not ctx.computed:
                raise _invalid("compute has not run since the inputs were last set")
            if ctx.slot is None and ctx.saved_outputs is not None:
                return ctx.saved_outputs[index]  # its interpreter went to another context; this is ours
            interpreter = self._interpreter(state, ctx)
            port = state.outputs[index]
            if port.nbytes <= SMALL_OUTPUT:
                # Copying a small output (get_tensor: 0.6 us) is cheaper than making a view (1.2 us),
                # and leaves no view behind.
                copied: np.ndarray = interpreter.get_tensor(port.tensor)
                return copied
            # A view of the output buffer: the core copies it into the guest before anything else
            # can touch this interpreter (a live view makes invoke/allocate refuse, not crash).
            view: np.ndarray = interpreter.tensor(port.tensor)()
        return view
