"""Resource limits an embedder can set per host; every store of the host gets the same ones."""

from __future__ import annotations

from dataclasses import dataclass

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
