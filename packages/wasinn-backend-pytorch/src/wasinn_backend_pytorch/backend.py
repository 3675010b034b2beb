"""The PyTorch backend: the hook implementations.

torch is imported only by the hooks that need it (about a second): scoring a CPU model does not.

* ``load`` checks the archive (:mod:`.safety`), loads it once on its device in eval mode, and reads
  the tensor layout: a TorchScript ``forward`` declares its arguments but not their types or
  shapes; a torch.export program declares both, for inputs and outputs.
* A context owns one staging buffer per input, made once per shape: ``set_input`` is one copy from
  guest memory into it (pinned memory when the model lives on CUDA, so the upload is asynchronous).
* ``compute`` runs ``forward`` under ``torch.inference_mode`` and brings every output back to the
  CPU, C-contiguous: that is the one synchronisation per compute. ``get_output`` returns a view.
"""

from __future__ import annotations

import importlib
import io
import logging
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
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
    ModelFormat,
    Score,
    Tensor,
    TensorSpec,
    TensorType,
    WasiNnError,
)
from wasinn_backend_pytorch import _info, safety
from wasinn_backend_pytorch._info import FORMATS

log = logging.getLogger("wasinn.pytorch")

# torch.export.load keeps its deserializer in a module global ("_CURRENT_DESERIALIZER is already
# set" when two threads load at once), and warnings filters are process-wide: loads are serialised.
# Inference is not.
_LOAD_LOCK = threading.Lock()

#: The native runtime of TorchScript and torch.export programs, on the CPU / on CUDA.
SCORE_CPU = 90
SCORE_CUDA = 100
#: Config keys, and those only the embedder may set (the thread count is process-wide in torch).
ACCEPTED_KEYS = frozenset({"device", "num_threads"})
EMBEDDER_ONLY_KEYS = frozenset({"num_threads"})

# wasi-nn tensor type <-> torch dtype name (torch itself is imported lazily).
_TORCH_DTYPE_NAMES = {
    TensorType.F16: "float16", TensorType.BF16: "bfloat16", TensorType.F32: "float32", TensorType.F64: "float64",
    TensorType.U8: "uint8", TensorType.I8: "int8", TensorType.I32: "int32", TensorType.I64: "int64",
}


_TORCH: list[ModuleType] = []  # torch, once imported (the hot path asks for it on every call)
_DTYPES: dict[TensorType, Any] = {}


def _torch() -> ModuleType:
    if not _TORCH:
        _TORCH.append(importlib.import_module("torch"))
    return _TORCH[0]


def torch_dtype(dtype: TensorType) -> Any:
    found = _DTYPES.get(dtype)
    if found is None:
        found = _DTYPES[dtype] = getattr(_torch(), _TORCH_DTYPE_NAMES[dtype])
    return found


_TYPES_OF: dict[Any, TensorType | None] = {}


def tensor_type(dtype: Any) -> TensorType | None:
    """The wasi-nn type of a torch dtype (bool travels as u8), or ``None`` if it has none."""
    if dtype in _TYPES_OF:
        return _TYPES_OF[dtype]
    name = str(dtype).removeprefix("torch.")
    found = TensorType.U8 if name == "bool" else next(
        (member for member, candidate in _TORCH_DTYPE_NAMES.items() if candidate == name), None)
    _TYPES_OF[dtype] = found
    return found


class ConfigError(ValueError):
    """The model's config cannot be used; ``load`` answers ``invalid_argument``."""


@dataclass(frozen=True, slots=True)
class TorchConfig:
    device: str | None = None
    num_threads: int | None = None


def parse_config(config: Mapping[str, Any], guest_config: Mapping[str, Any] | None = None) -> TorchConfig:
    unknown = sorted(set(config) - ACCEPTED_KEYS)
    if unknown:
        raise ConfigError(f"unknown key(s) {', '.join(unknown)} (accepted: {', '.join(sorted(ACCEPTED_KEYS))})")
    refused = sorted(EMBEDDER_ONLY_KEYS & set(guest_config or {}))
    if refused:
        raise ConfigError(f"a guest may not set {', '.join(refused)} (it is process-wide: only the embedder may)")
    device = config.get("device")
    if device is not None and (not isinstance(device, str) or not _valid_device(device)):
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {device!r}")
    threads = config.get("num_threads")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or not 1 <= threads <= 1024):
        raise ConfigError(f"num_threads must be an integer from 1 to 1024, got {threads!r}")
    return TorchConfig(device=device, num_threads=threads)


def _valid_device(device: str) -> bool:
    if device in ("cpu", "cuda"):
        return True
    kind, _, number = device.partition(":")
    return kind == "cuda" and number.isdigit()


def cuda_state() -> tuple[bool, str]:
    """Whether torch can use CUDA here, and the words that say why (not)."""
    torch = _torch()
    built = torch.version.cuda
    if not built:
        return False, f"this torch build ({torch.__version__}) has no CUDA"
    if not torch.cuda.is_available():
        return False, f"torch {torch.__version__} was built with CUDA {built}, but no CUDA device is available"
    return True, f"CUDA {built}, {torch.cuda.device_count()} device(s)"


@dataclass(slots=True)
class GraphState:
    """What ``load`` made: the module (shared by every context), its device and its inputs."""

    module: Any
    device: str
    kind: ModelFormat
    #: How many inputs ``forward`` needs at least (the rest have defaults).
    required_inputs: int
    load_ms: float = 0.0


@dataclass(slots=True)
class ContextState:
    """One context: a staging buffer per input, and the outputs of its last compute."""

    #: Per input: (wasi-nn type, shape, typed torch view of the buffer, the buffer's flat byte
    #: memoryview), or None while unset.
    staged: list[tuple[TensorType, tuple[int, ...], Any, memoryview] | None]
    #: The last compute's outputs, as numpy views of CPU tensors (or the reason one cannot be given).
    outputs: list[np.ndarray | str] = field(default_factory=list)
    computed: bool = False


def _walk_kinds(graph: Any) -> list[str]:
    """Every node kind in a TorchScript graph, nested blocks included."""
    kinds: list[str] = []
    pending = list(graph.nodes())
    while pending:
        node = pending.pop()
        kinds.append(node.kind())
        for block in node.blocks():
            pending.extend(block.nodes())
    return kinds


def _torchscript_kinds(module: Any) -> list[str]:
    """Every node kind the module can run: each method of each submodule with the functions and
    methods it calls inlined (a call into the archive's own code is walked, not trusted)."""
    kinds: list[str] = []
    for submodule in module.modules():
        script = getattr(submodule, "_c", None)
        if script is None:
            continue
        for name in script._method_names():
            kinds.extend(_walk_kinds(script._get_method(name).inlined_graph))
    return kinds


_OP_NAMES: list[frozenset[str]] = []


def _op_names() -> frozenset[str]:
    """The names of every aten and prim operator torch knows (what a method call on a tensor can reach)."""
    if not _OP_NAMES:
        schemas = _torch()._C._jit_get_all_schemas()
        _OP_NAMES.append(frozenset(s.name.split("::", 1)[1] for s in schemas
                                   if s.name.startswith(("aten::", "prim::"))))
    return _OP_NAMES[0]


def _target_name(target: Any) -> str:
    """A ``.pt2`` graph node's target as torch.export serializes it."""
    torch = _torch()
    if isinstance(target, torch._ops.OpOverload):
        return f"torch.ops.{target.namespace}.{target._opname}.{target._overloadname}"
    if isinstance(target, torch._ops.HigherOrderOperator):
        return f"torch.ops.higher_order.{target.name()}"
    return f"{getattr(target, '__module__', '?')}.{getattr(target, '__name__', '?')}"


def _export_targets(program: Any) -> list[Any]:
    """The call targets of every graph of the program, subgraphs of higher-order operators included."""
    return [node.target for module in program.graph_module.modules() if hasattr(module, "graph")
            for node in module.graph.nodes if node.op == "call_function"]


def _flatten(value: Any) -> list[Any]:
    """The outputs of ``forward`` in order: a tensor, or the leaves of tuples, lists and dicts."""
    if isinstance(value, tuple | list):
        return [leaf for item in value for leaf in _flatten(item)]
    if isinstance(value, dict):
        return [leaf for item in value.values() for leaf in _flatten(item)]
    return [value]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class TorchBackend:
    """wasinn backend for PyTorch (entry point ``pytorch``)."""

    def backend_info(self) -> BackendInfo:
        return _info.backend_info()

    def devices(self) -> Sequence[Device]:
        available, _ = cuda_state()
        if not available:
            return []
        cuda = _torch().cuda
        return [Device(ExecutionTarget.GPU, f"{cuda.get_device_name(i)} (cuda:{i})", vendor="nvidia",
                       source="torch") for i in range(cuda.device_count())]

    def _device(self, model: ModelDescription, config: TorchConfig) -> str | Decline:
        """The torch device for the model's target, or a refusal that says why."""
        wanted = config.device
        if model.target is ExecutionTarget.CPU:
            if wanted not in (None, "cpu"):
                return Decline(f"device {wanted} contradicts target cpu", ErrorCode.INVALID_ARGUMENT)
            return "cpu"
        if model.target is ExecutionTarget.TPU:
            return Decline("PyTorch has no TPU/NPU device here", ErrorCode.UNSUPPORTED_OPERATION)
        available, why = cuda_state()
        if model.target is ExecutionTarget.AUTO:
            if wanted is not None:
                return wanted if wanted == "cpu" or available else Decline(f"device {wanted}: {why}",
                                                                           ErrorCode.UNSUPPORTED_OPERATION)
            return "cuda:0" if available else "cpu"
        if wanted == "cpu":
            return Decline("device cpu contradicts target gpu", ErrorCode.INVALID_ARGUMENT)
        if not available:
            return Decline(f"target gpu needs CUDA: {why}; not running on the CPU instead",
                           ErrorCode.UNSUPPORTED_OPERATION)
        device = wanted or "cuda:0"
        index = int(device.partition(":")[2] or 0)
        if index >= _torch().cuda.device_count():
            return Decline(f"{device} does not exist ({why})", ErrorCode.UNSUPPORTED_OPERATION)
        return device

    def can_handle(self, model: ModelDescription, hw: Hardware) -> Score | Decline | None:
        if model.format not in FORMATS:
            return None
        try:
            config = parse_config(model.config, model.guest_config)
        except ConfigError as exc:
            return Score(SCORE_CPU, f"PyTorch, but load will fail: {exc}")
        if model.target is ExecutionTarget.CPU:  # no torch import to score a CPU model
            if config.device not in (None, "cpu"):
                return Decline(f"device {config.device} contradicts target cpu", ErrorCode.INVALID_ARGUMENT)
            return Score(SCORE_CPU, f"{model.format.value} is PyTorch's own format; PyTorch on the CPU", "cpu")
        device = self._device(model, config)
        if isinstance(device, Decline):
            return device
        if device.startswith("cuda"):
            name = _torch().cuda.get_device_name(int(device.partition(":")[2] or 0))
            return Score(SCORE_CUDA, f"{model.format.value} on CUDA ({name})", device)
        return Score(SCORE_CPU, f"{model.format.value} is PyTorch's own format; no CUDA device, so the CPU "
                                f"(target auto)", "cpu")

    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        if len(model.builders) != 1:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"a PyTorch model is one graph builder, got "
                                                          f"{len(model.builders)}")
        try:
            config = parse_config(model.config, model.guest_config)
        except ConfigError as exc:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"pytorch backend config: {exc}") from None
        device = self._device(model, config)
        if isinstance(device, Decline):  # re-checked: a forced backend skips the ranking's refusal
            log.error("pytorch: cannot load %s: %s", model.describe(), device.reason)
            raise WasiNnError(device.code, f"pytorch backend cannot run {model.describe()}: {device.reason}")
        torch = _torch()
        if config.num_threads is not None and torch.get_num_threads() != config.num_threads:
            log.info("pytorch: torch.set_num_threads(%d) (process-wide)", config.num_threads)
            torch.set_num_threads(config.num_threads)
        started = time.perf_counter()
        data = bytes(model.builders[0])
        try:
            # A guest's archive passes the whitelists before torch reads it and again once loaded;
            # the embedder's named models are its own code (a .pt2 still gets the archive checks).
            if model.format == ModelFormat.TORCH_EXPORT:
                module, inputs, outputs, required = self._load_export(data, device, guest=model.from_guest)
            else:
                module, inputs, outputs, required = self._load_torchscript(data, device, guest=model.from_guest)
        except safety.UnsafeModel as exc:
            log.error("pytorch: refused %s: %s", model.describe(), exc)
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"refused {model.describe()}: {exc}") from None
        except WasiNnError:
            raise
        except Exception as exc:
            log.error("pytorch: cannot load %s: %s", model.describe(), _first_line(exc))
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"torch cannot load {model.describe()}: "
                                                          f"{_first_line(exc)}") from None
        state = GraphState(module=module, device=device, kind=model.format, required_inputs=required,
                           load_ms=(time.perf_counter() - started) * 1000)
        log.debug("pytorch: %s loaded on %s in %.1f ms", model.describe(), device, state.load_ms)
        return Graph(inputs=inputs, outputs=outputs, device=device, state=state)

    @staticmethod
    def _load_torchscript(data: bytes, device: str, *, guest: bool) -> tuple[Any, list[TensorSpec],
                                                                               list[TensorSpec], int]:
        torch = _torch()
        if guest:
            safety.check_torchscript(data, _op_names())
        with _LOAD_LOCK, warnings.catch_warnings():
            # "torch.jit.load is deprecated" on every load would land on the guest's stderr; the
            # format still loads, and the docs say so once.
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(io.BytesIO(data), map_location=device)
        module.eval()
        disallowed = safety.disallowed_kind(_torchscript_kinds(module)) if guest else None
        if disallowed:
            raise safety.UnsafeModel(f"its code calls {disallowed}, which is not an allowed operator")
        arguments = module.forward.schema.arguments[1:]  # [0] is self
        inputs: list[TensorSpec] = []
        required = 0
        for argument in arguments:
            optional = argument.default_value is not None or "Optional" in str(argument.type)
            if str(argument.type) not in ("Tensor", "Optional[Tensor]"):
                if optional:
                    break  # wasi-nn can only pass tensors: later arguments keep their defaults
                raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"forward's argument {argument.name!r} is "
                                                                   f"{argument.type}, which wasi-nn cannot pass")
            inputs.append(TensorSpec(argument.name, None, None))
            required += 0 if optional else 1
        return module, inputs, [], required  # outputs: known once forward has run

    @staticmethod
    def _load_export(data: bytes, device: str, *, guest: bool) -> tuple[Any, list[TensorSpec], list[TensorSpec],
                                                                          int]:
        torch = _torch()
        safe = safety.safe_torch_export(data, check_targets=guest)
        with _LOAD_LOCK:
            program = torch.export.load(io.BytesIO(safe))
        disallowed = safety.disallowed_target(_export_targets(program), _target_name) if guest else None
        if disallowed:
            raise safety.UnsafeModel(f"its graph calls {disallowed}, which is not an allowed operator")
        nodes = {node.name: node for node in program.graph.nodes}
        signature = program.graph_signature
        inputs = [_export_spec(name, nodes.get(name)) for name in signature.user_inputs]
        output_node = next(node for node in program.graph.nodes if node.op == "output")
        leaves = _flatten(output_node.args[0])
        outputs = [_export_spec(str(getattr(leaf, "name", i)), leaf if hasattr(leaf, "meta") else None)
                   for i, leaf in enumerate(leaves)][-len(signature.user_outputs):] if signature.user_outputs else []
        module = program.module()
        module.to(device)
        return module, inputs, outputs, len(inputs)

    def unload(self, graph: Graph) -> None:
        graph.state.module = None  # contexts do not hold the module: it goes with the graph

    def init_execution_context(self, graph: Graph) -> Context:
        state: GraphState = graph.state
        if state.module is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "the graph was unloaded")
        return Context(graph, state=ContextState(staged=[None] * len(graph.inputs)))

    def finalize_execution_context(self, context: Context) -> None:
        state: ContextState = context.state
        state.staged.clear()
        state.outputs.clear()
        state.computed = False

    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        graph: GraphState = context.graph.state
        state: ContextState = context.state
        spec = context.graph.inputs[index]
        if (spec.dtype is not None and tensor.dtype is not spec.dtype) or not spec.accepts_shape(tensor.shape):
            got = f"{tensor.dtype.value}[{','.join(str(d) for d in tensor.shape)}]"
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input {index} ({spec.name!r}) expects {spec.describe()}, "
                                                          f"got {got}")
        staged = state.staged[index]
        if staged is None or staged[0] is not tensor.dtype or staged[1] != tensor.shape:
            torch = _torch()
            nbytes = int(np.prod(tensor.shape, dtype=np.int64)) * tensor.dtype.itemsize
            raw = torch.empty(nbytes, dtype=torch.uint8, pin_memory=graph.device.startswith("cuda"))
            staged = (tensor.dtype, tuple(tensor.shape), raw.view(torch_dtype(tensor.dtype)).reshape(tensor.shape),
                      raw.numpy().data.cast("B"))
            state.staged[index] = staged
        try:
            staged[3][:] = tensor.data  # the one copy out of guest memory
        except (TypeError, ValueError):  # an embedder's tensor over a non-byte memoryview
            staged[3][:] = np.ascontiguousarray(tensor.numpy()).reshape(-1).view(np.uint8).data
        state.computed = False

    def compute(self, context: Context) -> None:
        graph: GraphState = context.graph.state
        state: ContextState = context.state
        if graph.module is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "the graph was unloaded")
        given = 0
        while given < len(state.staged) and state.staged[given] is not None:
            given += 1
        missing = [str(i) for i in range(len(state.staged)) if state.staged[i] is None and i < graph.required_inputs]
        if missing or any(s is not None for s in state.staged[given:]):
            unset = missing or [str(i) for i in range(given, len(state.staged)) if state.staged[i] is None]
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input(s) {', '.join(unset)} not set")
        torch = _torch()
        state.computed = False
        state.outputs = []
        cuda = graph.device.startswith("cuda")
        try:
            with torch.inference_mode():
                arguments = [s[2].to(graph.device, non_blocking=True) if cuda else s[2]
                             for s in state.staged[:given] if s is not None]
                result = graph.module(*arguments)
                outputs = [_to_numpy(torch, leaf) for leaf in _flatten(result)]
        except Exception as exc:
            log.error("pytorch: forward failed: %s", _first_line(exc))
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"PyTorch failed to run: {_first_line(exc)}") from None
        state.outputs = outputs
        state.computed = True

    def get_output(self, context: Context, index: int) -> np.ndarray:
        state: ContextState = context.state
        if not state.computed:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "compute has not run on this context (or it failed)")
        if not 0 <= index < len(state.outputs):
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"output index {index} out of range: forward returned "
                                                          f"{len(state.outputs)} output(s)")
        value = state.outputs[index]
        if isinstance(value, str):
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"output {index} is {value}, which wasi-nn tensors "
                                                               f"cannot carry")
        return value


def _to_numpy(torch: ModuleType, leaf: Any) -> np.ndarray | str:
    """One output of forward on the CPU as a C-contiguous numpy view, or what it is if it cannot be."""
    if not isinstance(leaf, torch.Tensor):
        return f"a {type(leaf).__name__}"
    if tensor_type(leaf.dtype) is None:
        return f"a {leaf.dtype} tensor"
    leaf = leaf.detach()
    if leaf.device.type != "cpu":
        leaf = leaf.cpu()  # the synchronisation: the GPU has finished
    leaf = leaf.contiguous()
    if leaf.dtype == torch.bool:
        return leaf.view(torch.uint8).numpy()  # type: ignore[no-any-return]
    if leaf.dtype == torch.bfloat16:
        return leaf.view(torch.int16).numpy().view(np.uint16)  # type: ignore[no-any-return]  # bf16 bits as <u2
    return leaf.numpy()  # type: ignore[no-any-return]


def _export_spec(name: str, node: Any) -> TensorSpec:
    value = node.meta.get("val") if node is not None else None
    if value is None or not hasattr(value, "dtype"):
        return TensorSpec(name, None, None)
    shape = tuple(int(d) if isinstance(d, int) or str(d).isdigit() else None for d in value.shape)
    return TensorSpec(name, tensor_type(value.dtype), shape)
