"""Kept for imports written before :mod:`wasinn.limits` (a leaf module both the host and
:class:`~wasinn.model.ModelDescription` use) held the limits."""

from __future__ import annotations

from wasinn.limits import GiB, Limits, MiB

__all__ = ["GiB", "Limits", "MiB"]
