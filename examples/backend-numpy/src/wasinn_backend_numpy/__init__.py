"""wasinn-backend-numpy: a third-party wasinn backend that runs NumPy ``.npz`` multilayer perceptrons.

* :mod:`wasinn_backend_numpy.npz`: the ``npz-mlp`` model format (read, write, detect).
* :mod:`wasinn_backend_numpy.backend`: the hooks; the entry point
  ``numpy = "wasinn_backend_numpy.backend:NumpyBackend"`` (group ``wasinn.backends``) names its class.

Written only against wasinn's public API (``from wasinn import ...``), as a backend published
outside the wasinn repository would be. This module stays light: wasinn imports the backend to list
it, before any model is loaded.
"""

from __future__ import annotations

__version__ = "0.1.0"
