"""What several ``wasinn`` commands share (kept apart from :mod:`wasinn.cli.main`, which imports them)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path

from wasinn.errors import ConfigurationError

TRAP_EXIT_STATUS = 134  # what Wasmtime's CLI reports for a trap (128 + SIGABRT)


def print_json(data: object) -> None:
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def resolve_paths(paths: Sequence[str]) -> list[Path]:
    files = [Path(p) for p in paths]
    if len(files) == 1 and files[0].suffix == ".xml":
        files.append(files[0].with_suffix(".bin"))
    for file in files:
        if not file.is_file():
            raise ConfigurationError(f"{file} is not a file")
    return files
