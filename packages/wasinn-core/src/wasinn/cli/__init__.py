"""The ``wasinn`` command line: ``run``, ``backends``, ``explain``, ``hardware``."""
