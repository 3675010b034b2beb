"""The wasi-nn service, below both guest ABIs: what a guest's call does once its arguments are read.

- :mod:`wasinn.service.loader`: :class:`~wasinn.service.loader.GraphLoader`, from model bytes or a
  registered name to a loaded graph (backend registry, hardware, named models, ranking, the host's
  policy on what a guest may load);
- :mod:`wasinn.service.store`: :class:`~wasinn.service.store.StoreService`, one store's graph and
  context tables and the wasi-nn operations on them, in symbols (enums, ndarrays, tensors);
- :mod:`wasinn.service.graphs` (a loaded graph, a backend call) and :mod:`wasinn.service.named`.

Limits and budgets are the ground floor's (:mod:`wasinn.limits`, :mod:`wasinn.budget`). Nothing here
imports :mod:`wasinn.abi`, :mod:`wasinn.component` or :mod:`wasinn.host`: the two ABIs (core modules
and components) sit side by side above this floor, and :class:`wasinn.WasiNnHost` above both (see
``docs/architecture.md``).
"""
