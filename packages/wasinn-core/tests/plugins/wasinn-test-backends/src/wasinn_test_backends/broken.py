"""A backend whose runtime is missing: importing it fails, as a backend with a broken install would."""

raise ImportError("No module named 'imaginary_runtime' (on purpose: this backend tests discovery)")
