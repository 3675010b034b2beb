"""The hooks of the ``numpy`` backend, as a class plugin.

The entry point ``numpy = "wasinn_backend_numpy.backend:NumpyBackend"`` names the class; wasinn
instantiates it once and calls its ``@hookimpl`` methods. (A module of ``@hookimpl`` functions
works too: wasinn's backend template uses that style.)
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

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
    hookimpl,
)
from wasinn_backend_numpy.npz import FORMAT, Mlp, ModelError, is_npz_mlp, load_mlp

NAME = "numpy"
#: Float types only: an MLP's weights are f16, f32 or f64, and the input must match them.
TENSOR_TYPES = (TensorType.F16, TensorType.F32, TensorType.F64)


@dataclass
class _Run:
    """One context's own input and output: nothing is shared between contexts."""

    input: np.ndarray | None = None
    output: np.ndarray | None = None


class NumpyBackend:
    """Runs ``npz-mlp`` models (see :mod:`wasinn_backend_numpy.npz`) with NumPy on the CPU."""

    # Every host instantiates the class: count live objects across all instances.
    _live: ClassVar[set[int]] = set()
    _lock: ClassVar[threading.Lock] = threading.Lock()

    @classmethod
    def live_objects(cls) -> int:
        """Graphs and contexts alive now, in every host (the conformance kit checks their release)."""
        with cls._lock:
            return len(cls._live)

    @classmethod
    def _track(cls, obj: object, alive: bool) -> None:
        with cls._lock:
            if alive:
                cls._live.add(id(obj))
            else:
                cls._live.discard(id(obj))

    # -- discovery and scoring -------------------------------------------------------------------
    @hookimpl
    def backend_info(self) -> BackendInfo:
        return BackendInfo(
            runtime="numpy",
            runtime_version=np.__version__,
            formats=(ModelFormat(FORMAT),),
            targets=(ExecutionTarget.CPU,),
            tensor_types=TENSOR_TYPES,
            summary="NumPy .npz multilayer perceptrons (npz-mlp) on the CPU",
        )

    @hookimpl
    def detect_format(self, builders: Sequence[bytes]) -> str | None:
        # wasinn's own detectors leave plain zips alone (TorchScript needs data.pkl): claim ours.
        return FORMAT if len(builders) == 1 and is_npz_mlp(builders[0]) else None

    @hookimpl
    def can_handle(self, model: ModelDescription, hw: Hardware) -> Score | Decline | None:
        if model.format != FORMAT:
            return None  # wasinn already skips us for formats BackendInfo does not list
        if model.target is not ExecutionTarget.CPU:
            return Decline(f"NumPy runs on the CPU only, not {model.target.value}", ErrorCode.UNSUPPORTED_OPERATION)
        # The format's native (and only) runtime, on the best device for it: near the top of the scale.
        simd = ", ".join(f for f in ("avx512f", "avx2", "neon") if hw.cpu.has(f)) or "no SIMD wasinn knows of"
        return Score(90, f"NumPy is the native runtime of {FORMAT} (CPU: {hw.cpu.cores} cores, {simd})",
                     device="cpu")

    # -- graphs ----------------------------------------------------------------------------------
    @hookimpl
    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        if model.target is not ExecutionTarget.CPU:
            raise WasiNnError(ErrorCode.UNSUPPORTED_OPERATION, "NumPy runs on the CPU only")
        if len(model.builders) != 1:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"an {FORMAT} model is one graph builder, "
                                                          f"got {len(model.builders)}")
        try:
            mlp = load_mlp(model.builders[0])
        except ModelError as exc:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"invalid {FORMAT} model: {exc}") from None
        dtype = TensorType.from_numpy(mlp.dtype)
        graph = Graph(inputs=[TensorSpec(mlp.input.name, dtype, mlp.input.shape)],
                      outputs=[TensorSpec(mlp.output.name, dtype, mlp.output.shape)],
                      device="cpu", state=mlp)
        self._track(graph, True)
        return graph

    @hookimpl
    def unload(self, graph: Graph) -> None:
        self._track(graph, False)

    # -- contexts --------------------------------------------------------------------------------
    @hookimpl
    def init_execution_context(self, graph: Graph) -> Context:
        context = Context(graph, state=_Run())
        self._track(context, True)
        return context

    @hookimpl
    def finalize_execution_context(self, context: Context) -> None:
        self._track(context, False)

    @hookimpl
    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        spec = context.graph.inputs[index]
        if tensor.dtype is not spec.dtype or not spec.accepts_shape(tensor.shape):
            got = f"{tensor.dtype.value}[{','.join(str(d) for d in tensor.shape)}]"
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT,
                              f"input {index} ({spec.name}) expects {spec.describe()}, got {got}")
        run: _Run = context.state
        run.input = tensor.numpy().copy()  # the view of guest memory dies with this call
        run.output = None

    @hookimpl
    def compute(self, context: Context) -> None:
        run: _Run = context.state
        if run.input is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"input 0 ({context.graph.inputs[0].name}) is not set")
        mlp: Mlp = context.graph.state
        with np.errstate(over="ignore", under="ignore"):  # float overflow gives inf, as other runtimes do
            run.output = mlp.forward(run.input)

    @hookimpl
    def get_output(self, context: Context, index: int) -> np.ndarray:
        run: _Run = context.state
        if run.output is None:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "compute has not run since the input was set")
        return run.output
