"""Resource limits an embedder can set per host; every store of the host gets the same ones.

A leaf module (it imports nothing of wasinn), so that both the host and what backends are told about
a model (:class:`~wasinn.model.ModelDescription`) can carry the limits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Where a guest's model bytes run (``Limits.guest_models``): see :mod:`wasinn.worker`.
GuestModels = Literal["isolate", "in-process", "refuse"]

GiB = 1 << 30
MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class Limits:
    """Caps on what one store (one guest instance) may make the host hold.

    Exceeding a size limit returns ``too_large``; exceeding a count returns ``busy``. The defaults are
    generous for real models and still stop a guest from exhausting the host.
    """

    #: Total bytes of the builders of one ``load`` call (named models are not counted: the
    #: embedder chose them).
    max_model_bytes: int = 2 * GiB
    #: Bytes of one input tensor, and of one output the guest asks for.
    max_tensor_bytes: int = 1 * GiB
    #: Graphs alive at once in one store (handles from ``load`` and ``load_by_name``).
    max_graphs_per_store: int = 64
    #: Execution contexts alive at once in one store.
    max_contexts_per_store: int = 256
    #: Host memory one store may pin through ``load`` (sum of model bytes of its live graphs).
    max_store_bytes: int = 4 * GiB
    #: Memory a runtime may hold on behalf of one execution context: an LLM's KV cache, the outputs a
    #: context keeps after ``compute``, a runtime's compute arena where it can be capped. Backends
    #: charge it through ``Context.budget`` (:class:`wasinn.budget.ContextBudget`) before allocating.
    max_runtime_bytes_per_context: int = 1 * GiB
    #: The same, summed over every context of one store.
    max_runtime_bytes_per_store: int = 4 * GiB
    #: Longest context (in tokens) a language model may be given: a guest's ``ctx-size`` and the
    #: context length a model declares are both capped here, so that the embedder, not the guest's
    #: model, bounds what tokenizing and caching cost.
    max_context_tokens: int = 32_768
    #: Whether a guest's ``load`` may hand over a model format that carries code its runtime runs
    #: (TorchScript, ``torch.export`` archives: :data:`wasinn.formats.CODE_FORMATS`, and any format a
    #: backend lists in ``BackendInfo.code_formats``). Off by default: such bytes are refused with
    #: ``invalid_argument`` before any backend sees them. Named models are the embedder's and unaffected.
    allow_guest_code: bool = False
    #: Where the model bytes of a guest's ``load`` run: ``"isolate"`` (a confined worker process per
    #: graph, :mod:`wasinn.worker`), ``"in-process"`` (in the host, as named models do) or ``"refuse"``
    #: (``unsupported_operation``: only the embedder's named models). ``"isolate"`` is the default:
    #: a model file is a program for its runtime, and a guest's is untrusted (see docs/isolation.md).
    guest_models: GuestModels = "isolate"
    #: Memory cap of one worker (``RLIMIT_DATA``) for its runtime, on top of twice the model's size.
    worker_memory_bytes: int = 512 * MiB
    #: Wall-clock deadline of one call into a worker (load, compute ...): past it the worker is killed
    #: and its graph answers ``runtime_error``. ``None``: no deadline.
    worker_call_seconds: float | None = 300.0
    #: CPU seconds one call into a worker may use (``RLIMIT_CPU``, whole seconds). ``None``: no cap.
    worker_cpu_seconds: float | None = None
    #: Start the worker templates of the backends a guest could ``load`` with when the first store is
    #: made, in the background: the first isolated load is then a fork (milliseconds), not the start
    #: of an interpreter importing a runtime (hundreds). Off: each template starts at its first load.
    worker_prestart: bool = True
    #: Refuse a guest's model (``unsupported_operation``) rather than run it in a worker that lacks a
    #: confinement layer this machine cannot apply (see ``wasinn explain``).
    strict_isolation: bool = False

    # -- what one guest call may ask for (both ABIs read their arguments against these) -------------
    #: Graph builders in one ``load`` call.
    max_builders: int = 16
    #: Dimensions of one tensor.
    max_rank: int = 64
    #: Bytes of a model name given to ``load_by_name``.
    max_name_bytes: int = 4096
    #: Bytes of the JSON config given to ``load_by_name_with_config`` (core modules).
    max_config_bytes: int = 1 * MiB
    #: Named tensors in one component ``compute`` call.
    max_named_tensors: int = 1024
    #: Tensor resources one component store may hold at once (guest-made inputs and host-made outputs
    #: together); past it, making a tensor traps. ``None``: 4096
    #: (:data:`wasinn.component.state.MAX_TENSORS_PER_STORE`).
    max_tensors_per_store: int | None = None
    #: Error resources one component store keeps at once: past it, the oldest are forgotten (their
    #: ``code()`` is ``runtime-error``). ``None``: 1024 (:data:`wasinn.component.state.MAX_ERRORS_PER_STORE`).
    max_errors_per_store: int | None = None


#: The limits of a host made without any: what the module-level constants of the ABIs spell.
DEFAULT_LIMITS = Limits()
