"""The conformance kit's checks, one module per concern, combined in
:class:`wasinn.testing.BackendConformance` (:mod:`wasinn.testing.kit`).

* :mod:`.base`: :class:`~.base.ConformanceBase`, the author's settings, the ``kit`` fixture and the
  helpers every check uses;
* :mod:`.discovery`: entry point, ``backend_info``, a light import, ``detect_format``, ``devices``;
* :mod:`.ranking`: ``can_handle`` scores what it serves and declines the rest;
* :mod:`.operations`: the five operations on every claimed tensor type, graphs, contexts, names;
* :mod:`.streaming`: ``compute_single`` / ``get_output_single`` / ``fini_single``;
* :mod:`.errors`: every error path, and a usable context after it;
* :mod:`.lifecycle`: every graph and context released, whichever way a store or host ends;
* :mod:`.threads`: concurrent inferences.
"""
