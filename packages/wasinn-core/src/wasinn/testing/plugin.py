"""pytest plugin entry point of wasinn-core (``pytest11``)."""
