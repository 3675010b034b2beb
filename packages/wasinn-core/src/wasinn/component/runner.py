"""Kept for imports written before running a component moved beside ``wasinn run``:
:mod:`wasinn.cli.component`."""

from __future__ import annotations

from wasinn.cli.component import RUN_INTERFACE, TRAP_EXIT_STATUS, load_component, run_component, run_export

__all__ = ["RUN_INTERFACE", "TRAP_EXIT_STATUS", "load_component", "run_component", "run_export"]
