"""Testing tools for wasinn backends: the conformance kit, its harness and a backend generator.

* :class:`BackendConformance` (:mod:`wasinn.testing.kit`): subclass it in a backend's tests to run
  the conformance suite against the backend (docs/backend-authors.md has the exact lines).
* :class:`KitHarness` (:mod:`wasinn.testing.harness`), :class:`Outcome`, :func:`sample_input`
  (:mod:`wasinn.testing.values`): the same machinery for a backend's own tests (hosts that know
  one backend, guests, readable checks).
* :class:`TrampolineGuest` (:mod:`wasinn.testing.guest`): a real wasm guest that re-exports every
  wasi-nn import, to drive the ABI from Python.
* :func:`render_backend_template` (:mod:`wasinn.testing.template`): generate a new backend package.

Names are imported lazily: pytest loads :mod:`wasinn.testing.plugin` (and so this package) in every
run where wasinn-core is installed, and that must stay cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wasinn.testing.guest import TrampolineGuest
    from wasinn.testing.harness import KitHarness
    from wasinn.testing.kit import BackendConformance, ModelFactory
    from wasinn.testing.streaming import check_streaming_hooks
    from wasinn.testing.template import render_backend_template
    from wasinn.testing.values import Outcome, expect_error, expect_ok, sample_input

_EXPORTS = {
    "BackendConformance": "wasinn.testing.kit",
    "ModelFactory": "wasinn.testing.kit",
    "KitHarness": "wasinn.testing.harness",
    "Outcome": "wasinn.testing.values",
    "expect_error": "wasinn.testing.values",
    "expect_ok": "wasinn.testing.values",
    "sample_input": "wasinn.testing.values",
    "TrampolineGuest": "wasinn.testing.guest",
    "render_backend_template": "wasinn.testing.template",
    "check_streaming_hooks": "wasinn.testing.streaming",
}

__all__ = [
    "BackendConformance",
    "KitHarness",
    "ModelFactory",
    "Outcome",
    "TrampolineGuest",
    "check_streaming_hooks",
    "expect_error",
    "expect_ok",
    "render_backend_template",
    "sample_input",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'wasinn.testing' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
