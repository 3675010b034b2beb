"""The wasinn hooks of backend ``yourbackend`` (the ``wasinn.backends`` entry point names this module).

wasinn calls ``backend_info`` when it discovers backends, ``detect_format`` and ``can_handle`` when
a guest loads a model, ``load`` on the winner only, then the per-context hooks. The contract, in
short (docs/backend-authors.md in wasinn has it all):

* be cheap until ``load``: import your runtime lazily, never load in ``can_handle``;
* raise :class:`wasinn.WasiNnError` with the :class:`wasinn.ErrorCode` the guest should get;
* ``Tensor.data`` is a view of guest memory valid only during ``set_input``: copy it;
* contexts of one graph may run in different threads at once (or set
  ``BackendInfo.concurrent_contexts=False``).

The module is laid out the way every wasinn backend is: the hooks wasinn calls to list the backend
and detect formats (``backend_info``, ``detect_format``) are defined here, cheap; the others are
declared with :func:`wasinn.forward_hooks`, which imports the implementation, the class
:class:`YourbackendBackend`, on their first call and hands it each call. Its methods are plain
methods: each hook is marked once. Here the "runtime" is NumPy, which wasinn itself imports, so the
class sits below, in this module; a backend whose runtime is slow to import moves the class to a
module of its own (``runtime.py``, say) and changes the dotted path, so that listing backends never
imports it (the kit's ``test_import_is_light`` checks that, with ``heavy_modules``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

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
    forward_hooks,
    hookimpl,
)
from wasinn_backend_yourbackend.model import FORMAT, AffineModel, ModelError, is_model, parse

NAME = "yourbackend"
TENSOR_TYPES = (TensorType.F16, TensorType.F32, TensorType.F64, TensorType.U8, TensorType.I32, TensorType.I64)


# -- what wasinn asks to list the backend and detect formats: cheap, defined here -------------------
@hookimpl
def backend_info() -> BackendInfo:
    return BackendInfo(
        runtime="numpy",
        runtime_version=np.__version__,
        formats=(ModelFormat(FORMAT),),
        targets=(ExecutionTarget.CPU,),
        tensor_types=TENSOR_TYPES,
        summary=f"{FORMAT} models (elementwise affine) in NumPy",
    )


@hookimpl
def detect_format(builders: Sequence[bytes]) -> str | None:
    return FORMAT if len(builders) == 1 and is_model(builders[0]) else None


# -- the other hooks: each hands the call to one YourbackendBackend, made on the first call ---------
forward_hooks(__name__, "wasinn_backend_yourbackend.backend:YourbackendBackend", hooks=(
    "can_handle", "load", "unload", "init_execution_context", "finalize_execution_context", "set_input", "compute",
    "get_output"))

# Graphs and contexts alive now: lets the tests check that wasinn (and we) release everything.
_live: set[int] = set()
_live_lock = threading.Lock()


def live_objects() -> int:
    """How many graphs and contexts this backend holds right now."""
    with _live_lock:
        return len(_live)


def _track(obj: object, alive: bool) -> None:
    with _live_lock:
        if alive:
            _live.add(id(obj))
        else:
            _live.discard(id(obj))


@dataclass
class _Run:
    """One context's state: its own input and output (never shared between contexts)."""

    input: np.ndarray | None = None
    output: np.ndarray | None = None


class YourbackendBackend:
    """The implementation: one method per forwarded hook, with the hookspec's parameters."""

    def can_handle(self, model: ModelDescription, hw: Hardware) -> Score | Decline | None:
        if model.format != FORMAT:
            return None
        if model.target is not ExecutionTarget.CPU:
            return Decline(f"{NAME} runs on the CPU only, not {model.target.value}", ErrorCode.UNSUPPORTED_OPERATION)
        return Score(60, f"{NAME} is the native runtime of {FORMAT}", device="cpu")

    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        if model.target is not ExecutionTarget.CPU:
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, f"{NAME} runs on the CPU only")
        try:
            parsed = parse(model.builders)
        except ModelError as exc:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"invalid {FORMAT} model: {exc}") from None
        graph = Graph(
            inputs=[TensorSpec("x", parsed.dtype, parsed.shape)],
            outputs=[TensorSpec("y", parsed.dtype, parsed.shape)],
            device="cpu",
            state=parsed,
        )
        _track(graph, True)
        return graph

    def unload(self, graph: Graph) -> None:
        _track(graph, False)

    def init_execution_context(self, graph: Graph) -> Context:
        context = Context(graph, state=_Run())
        _track(context, True)
        return context

    def finalize_execution_context(self, context: Context) -> None:
        _track(context, False)

    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        spec = context.graph.inputs[index]  # wasinn has checked the index range
        if tensor.dtype is not spec.dtype or not spec.accepts_shape(tensor.shape):
            got = f"{tensor.dtype.value}[{','.join(str(d) for d in tensor.shape)}]"
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input {index} ({spec.name}) expects {spec.describe()}, "
                                                          f"got {got}")
        run: _Run = context.state
        run.input = tensor.numpy().copy()  # tensor.data dies with this call: copy it
        run.output = None

    def compute(self, context: Context) -> None:
        run: _Run = context.state
        if run.input is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "input 0 (x) is not set")
        model: AffineModel = context.graph.state
        dtype = run.input.dtype
        run.output = (run.input * np.asarray(model.scale, dtype) + np.asarray(model.bias, dtype)).astype(dtype)

    def get_output(self, context: Context, index: int) -> np.ndarray:
        run: _Run = context.state
        if run.output is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "compute has not run since the input was set")
        return run.output
