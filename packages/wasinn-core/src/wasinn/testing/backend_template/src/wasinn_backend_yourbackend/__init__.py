"""yourbackend: a wasinn backend.

The hooks are in :mod:`wasinn_backend_yourbackend.backend` (the ``wasinn.backends`` entry point),
the model format in :mod:`wasinn_backend_yourbackend.model`. Keep this module light: wasinn imports
the backend to list it, before any model is loaded.
"""

from __future__ import annotations

__version__ = "0.1.0"
