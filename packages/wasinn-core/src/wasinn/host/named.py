"""Kept for imports written before the floors: named models live in :mod:`wasinn.service.named`."""

from __future__ import annotations

from wasinn.service.named import NamedModel, NamedModels, config_key

__all__ = ["NamedModel", "NamedModels", "config_key"]
