"""The backend contract: everything a wasinn backend author needs is in this module.

A backend is a Python object (usually a module) whose functions are marked with :data:`hookimpl`,
published through the entry-point group ``wasinn.backends``::

    # pyproject.toml
    [project.entry-points."wasinn.backends"]
    mybackend = "wasinn_backend_mine"

The entry-point name is the backend's name (``--backend mybackend``). Import your runtime lazily,
inside the hooks: importing wasinn and listing backends must stay fast. The usual way: the module
the entry point names defines ``backend_info`` and declares the other hooks with
:func:`wasinn.forwarding.forward_hooks`, which imports the implementation on their first call.

The hooks below come in four sections: discovery, selection, lifecycle and streaming;
:data:`REQUIRED_HOOKS` lists those every backend implements.

How wasinn uses the hooks:

* ``backend_info`` is asked once, when backends are discovered (must be cheap).
* ``can_handle`` is asked of **every** backend when a model is loaded; the highest :class:`Score`
  wins (ties: the user's preference order, then the name). Return ``None`` or a :class:`Decline`
  when you cannot serve the model.
* ``load`` is then called on the winner only; ``init_execution_context``, ``set_input``,
  ``compute`` and ``get_output`` only on the backend that owns the graph or context.
* ``unload`` and ``finalize_execution_context`` (optional) release what ``load`` and
  ``init_execution_context`` made; they are called on the guest's request, when the store closes
  or is garbage-collected, and when the host closes.

Load-time config: ``load_by_name_with_config``'s JSON object (the guest's) reaches ``load`` as
``model.guest_config``, merged over the embedder's config of the named model in ``model.config``
(see :class:`ModelDescription`); a config that changes the embedder's loads a graph of the store's
own. Treat unknown keys as you see fit (log them, or refuse with ``INVALID_ARGUMENT``).

Streaming (optional, WasmEdge's ``compute_single`` / ``get_output_single`` / ``fini_single``):
a backend that generates its output step by step (an LLM, one token per step) implements
``compute_single`` (run one step; raise ``ErrorCode.END_OF_SEQUENCE`` when there is none left,
``CONTEXT_FULL`` when the context has no room), ``get_output_single`` (that step's output) and
``fini_single`` (end the stream, ready for the next ``set_input``). A backend without them answers
``unsupported_operation`` to the three calls, as before.

Errors: raise :class:`WasiNnError` with an :class:`ErrorCode` to choose what the guest receives;
any other exception becomes ``runtime_error`` and is logged with its message.

Scores (guidelines; see the backend author's guide): 100 = the format's native runtime on the
requested target with the best device for it; 50-90 = native runtime, generic device or less
tuned; 10-49 = a second-choice runtime that can read the format; below 10 = works, but only as a
last resort. Consider ``model.target`` honestly: if you cannot meet it, ``Decline`` with
``ErrorCode.UNSUPPORTED_OPERATION`` rather than running on the CPU.

Threading: separate contexts may be used from separate threads at the same time. If your runtime
cannot run two contexts of one graph concurrently, set ``BackendInfo.concurrent_contexts=False``
and wasinn serialises them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pluggy

from wasinn.budget import ContextBudget
from wasinn.enums import ErrorCode, ExecutionTarget, ModelFormat, TensorType
from wasinn.errors import WasiNnError
from wasinn.hardware import Device, Hardware
from wasinn.model import ModelDescription
from wasinn.tensor import Tensor, TensorSpec

PROJECT = "wasinn"
hookspec = pluggy.HookspecMarker(PROJECT)
#: Mark each hook function of a backend with ``@hookimpl``.
hookimpl = pluggy.HookimplMarker(PROJECT)

__all__ = [
    "BackendInfo",
    "Context",
    "ContextBudget",
    "Decline",
    "Device",
    "ErrorCode",
    "ExecutionTarget",
    "Graph",
    "Hardware",
    "ModelDescription",
    "ModelFormat",
    "REQUIRED_HOOKS",
    "Score",
    "Tensor",
    "TensorSpec",
    "TensorType",
    "WasiNnError",
    "hookimpl",
]


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """What ``wasinn backends`` shows about a backend, known without importing its runtime.

    ``unavailable`` is a reason string when the backend is installed but cannot work (its runtime
    is missing, say); such a backend is listed but never asked to load anything.
    """

    runtime: str
    runtime_version: str | None
    formats: tuple[ModelFormat, ...]
    targets: tuple[ExecutionTarget, ...] = (ExecutionTarget.CPU,)
    tensor_types: tuple[TensorType, ...] = ()
    concurrent_contexts: bool = True
    summary: str = ""
    unavailable: str | None = None
    code_formats: tuple[ModelFormat, ...] = ()


@dataclass(frozen=True, slots=True)
class Score:
    """How well a backend fits a model on this hardware, and why (shown by ``wasinn explain``).

    ``device`` names what would run it (an execution provider, an OpenVINO device, a delegate).
    """

    value: float
    reason: str
    device: str | None = None


@dataclass(frozen=True, slots=True)
class Decline:
    """A reasoned "no" from ``can_handle``.

    ``code`` is what the guest receives if this backend was forced (``--backend``): usually
    ``INVALID_ENCODING`` for a format it cannot read, ``UNSUPPORTED_OPERATION`` for a target it
    cannot meet.

    ``malformed=True`` says more than "not me": the file is broken or hostile for its format (your
    verifier refused it). That ends the ranking: no runner-up is handed a file the backend that knows
    the format best has refused, and the guest gets ``code`` (use ``INVALID_ARGUMENT``).
    """

    reason: str
    code: ErrorCode = ErrorCode.INVALID_ENCODING
    malformed: bool = False


@dataclass(slots=True)
class Graph:
    """A loaded model, returned by ``load``. Subclass it or keep runtime objects in ``state``.

    ``inputs`` and ``outputs`` list the model's tensors in index order (the wasi-nn index is the
    position here); ``device`` says what runs it.
    """

    inputs: Sequence[TensorSpec]
    outputs: Sequence[TensorSpec]
    device: str = "cpu"
    state: Any = None


@dataclass(slots=True)
class Context:
    """An execution context of a graph, returned by ``init_execution_context``.

    Must be cheap to create: heavy work (sessions, compilation) belongs to ``load``.

    ``budget`` counts the memory the runtime holds for this context (KV cache, kept outputs): call
    ``context.budget.hold(name, nbytes)`` before allocating, and it raises ``TOO_LARGE`` past the
    store's limits. The core attaches the store's budget after ``init_execution_context`` returns (what
    was held before moves over) and releases it when the context is finalized.
    """

    graph: Graph
    state: Any = None
    extra: dict[str, Any] = field(default_factory=dict)
    budget: ContextBudget = field(default_factory=ContextBudget)


#: The hooks every backend implements (the others are optional); a backend that lacks one is listed
#: by ``wasinn backends`` as unavailable, with the missing names.
REQUIRED_HOOKS = (
    "backend_info",
    "can_handle",
    "load",
    "init_execution_context",
    "set_input",
    "compute",
    "get_output",
)


# --------------------------------------------------------------------------------------------------
# Discovery: asked when wasinn lists the backends and detects a model's format
# --------------------------------------------------------------------------------------------------


@hookspec
def backend_info() -> BackendInfo:  # type: ignore[empty-body]
    """Describe the backend. Must be cheap: do not import the runtime here."""


@hookspec
def devices() -> Sequence[Device]:  # type: ignore[empty-body]
    """(Optional) The accelerators the runtime can see; may import the runtime.

    Called lazily (``wasinn backends --probe``, and before the first load) and merged into the
    :class:`Hardware` snapshot that every backend scores against.
    """


@hookspec
def detect_format(builders: Sequence[bytes]) -> str | None:
    """(Optional) Recognise a format of your own that the built-in detectors do not know.

    Return its name (e.g. ``"npz-mlp"``, then list ``ModelFormat("npz-mlp")`` in
    ``BackendInfo.formats``), or ``None``. Look only at the bytes, cheaply; never raise.
    """


# --------------------------------------------------------------------------------------------------
# Selection: asked of every available backend at every load
# --------------------------------------------------------------------------------------------------


@hookspec
def can_handle(model: ModelDescription, hw: Hardware) -> Score | Decline | None:
    """Score how well this backend serves ``model`` on ``hw`` (see the module docstring).

    Do not load the model here: this is asked of every backend at every load.
    """


# --------------------------------------------------------------------------------------------------
# Lifecycle: a graph, its contexts and their inferences, on the backend that owns them
# --------------------------------------------------------------------------------------------------


@hookspec
def load(model: ModelDescription, hw: Hardware) -> Graph:  # type: ignore[empty-body]
    """Load (compile) the model once. The returned graph may be shared by many stores."""


@hookspec
def init_execution_context(graph: Graph) -> Context:  # type: ignore[empty-body]
    """Make a new execution context for ``graph``."""


@hookspec
def set_input(context: Context, index: int, tensor: Tensor) -> None:
    """Bind input ``index``. ``tensor.data`` is a view valid only during this call: copy it.

    Check the tensor against the model (raise ``WasiNnError(INVALID_ARGUMENT, ...)`` naming the
    expected type and shape). The core has already checked the index range and that the byte
    length matches the dimensions.
    """


@hookspec
def compute(context: Context) -> None:
    """Run inference with the inputs set so far."""


@hookspec
def get_output(context: Context, index: int) -> np.ndarray:  # type: ignore[empty-body]
    """Return output ``index`` as a C-contiguous ndarray (a view of the runtime's buffer is fine).

    The core copies it once, straight into the guest's buffer, before the next hook call.
    """


@hookspec
def unload(graph: Graph) -> None:
    """(Optional) Release a graph. Called once per graph."""


@hookspec
def finalize_execution_context(context: Context) -> None:
    """(Optional) Release a context. Called once per context."""


# --------------------------------------------------------------------------------------------------
# Streaming (optional, all three or none): output produced one step at a time
# --------------------------------------------------------------------------------------------------


@hookspec
def compute_single(context: Context) -> None:
    """(Optional) Run one step of a step-wise computation (one generated token).

    The first call after ``set_input`` starts the stream. Raise ``WasiNnError(END_OF_SEQUENCE)``
    when the stream has ended, ``CONTEXT_FULL`` when no room is left, ``PROMPT_TOO_LONG`` when the
    input does not fit.
    """


@hookspec
def get_output_single(context: Context, index: int) -> np.ndarray:  # type: ignore[empty-body]
    """(Optional) The output of the last ``compute_single`` step (an LLM: the token's bytes, u8).

    Same rules as ``get_output``: a C-contiguous ndarray the core copies once into the guest.
    """


@hookspec
def fini_single(context: Context) -> None:
    """(Optional) End a step-wise computation; the context is ready for new inputs."""
