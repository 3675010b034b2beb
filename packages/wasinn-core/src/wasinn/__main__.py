"""``python -m wasinn``: the same as the ``wasinn`` command."""

from wasinn.cli.main import main

raise SystemExit(main())
