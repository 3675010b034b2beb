"""Paths wasinn-core's tests use (a plain module: `conftest` names clash between test folders)."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
NN_RUN = REPO / "guests" / "nn-run" / "nn-run.wasm"
DEMO_MODELS = REPO / "demo" / "models"
