"""The backend conformance kit (see :mod:`wasinn.testing.plugin`)."""
