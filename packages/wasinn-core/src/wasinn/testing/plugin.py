"""pytest plugin of wasinn-core (entry point ``pytest11: wasinn``).

pytest loads it in every run where wasinn-core is installed, so it adds no tests and imports
nothing beyond wasinn itself: the conformance tests run only where a test module subclasses
:class:`wasinn.testing.BackendConformance`. It provides:

* the ``wasinn_conformance`` marker, carried by every kit test (``-m "not wasinn_conformance"``
  deselects them);
* the ``wasinn_kit`` fixture: ``wasinn_kit("mybackend")`` returns a
  :class:`wasinn.testing.KitHarness` (hosts that know only that backend, guests, readable
  outcomes), closed after the test;
* one line in pytest's header naming the backends whose conformance tests were collected.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from wasinn.hardware import Hardware
    from wasinn.testing.harness import KitHarness

MARKER = "wasinn_conformance"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}: a test of the wasinn backend conformance kit "
                                       "(wasinn.testing.BackendConformance)")


def pytest_report_collectionfinish(config: pytest.Config, items: list[pytest.Item]) -> list[str]:
    backends: dict[str, int] = {}
    for item in items:
        if item.get_closest_marker(MARKER) is None:
            continue
        name = getattr(getattr(item, "cls", None), "backend", None) or "?"
        backends[name] = backends.get(name, 0) + 1
    if not backends:
        return []
    listed = ", ".join(f"{name} ({count} tests)" for name, count in sorted(backends.items()))
    return [f"wasinn conformance kit: {listed}"]


@pytest.fixture
def wasinn_kit() -> Iterator[Callable[..., KitHarness]]:
    """A factory of :class:`~wasinn.testing.KitHarness` objects, each closed after the test."""
    made: list[Any] = []

    def make(backend: str, *, hardware: Hardware | None = None) -> KitHarness:
        from wasinn.testing.harness import KitHarness

        harness = KitHarness(backend, hardware=hardware).__enter__()
        made.append(harness)
        return harness

    yield make
    for harness in reversed(made):
        harness.close()
