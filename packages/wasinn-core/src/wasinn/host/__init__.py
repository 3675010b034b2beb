"""Host-side state: the embedder API (:class:`WasiNnHost`), per-store tables, named models, limits."""
