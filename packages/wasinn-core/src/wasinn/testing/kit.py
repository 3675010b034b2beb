"""The backend conformance kit: one base class that proves a wasinn backend keeps the contract.

A backend's test suite enables it with a subclass (see docs/backend-authors.md)::

    # tests/test_conformance.py
    from wasinn import ExecutionTarget, TensorType
    from wasinn.testing import BackendConformance

    class TestMyBackend(BackendConformance):
        backend = "mybackend"                  # the entry-point name
        tensor_types = (TensorType.F32,)       # what it claims to run
        targets = (ExecutionTarget.CPU,)       # where it claims to run
        encoding = "onnx"                      # what a guest passes to load (None: autodetect)

        def make_model(self, dtype, shape):    # one input, one output: y = x + 1
            return [build_my_add_one_model(dtype, shape)]

Every test drives the backend the way guests do: through a real wasm guest (the trampoline of
:mod:`wasinn.testing.guest`), against a host that knows only this backend, found through its
entry point. What is checked: discovery and a cheap, light import; scoring (its own model on
every claimed target; declining unclaimed targets and other formats); the five operations on
every claimed tensor type; several contexts, graphs and stores; ``load_by_name``; every error
path; release of every graph and context (and, if the author counts them, of the backend's own
objects); concurrent use from several threads.

To opt out of one check, override the test in the subclass (``def test_x(self): pytest.skip(why)``).

The checks live in :mod:`wasinn.testing.conformance`, one module per concern (discovery, ranking,
operations, streaming, errors, lifecycle, threads), on a common base that holds the author's
settings and the helpers; :class:`BackendConformance` combines them.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from wasinn.testing.conformance.base import Driver as Driver
from wasinn.testing.conformance.base import ModelFactory
from wasinn.testing.conformance.discovery import BUILTIN_FORMATS as BUILTIN_FORMATS
from wasinn.testing.conformance.discovery import DiscoveryChecks
from wasinn.testing.conformance.errors import WITX_TYPES as WITX_TYPES
from wasinn.testing.conformance.errors import ErrorChecks
from wasinn.testing.conformance.lifecycle import LifecycleChecks
from wasinn.testing.conformance.operations import OperationChecks
from wasinn.testing.conformance.ranking import RankingChecks
from wasinn.testing.conformance.streaming import StreamingChecks
from wasinn.testing.conformance.threads import ThreadChecks

__all__ = ["BackendConformance", "ModelFactory"]


# The groups are listed last-first: pytest collects a class's tests base by base in reverse MRO
# order, so this keeps the kit's tests in the order they have always run (discovery first).
class BackendConformance(ThreadChecks, LifecycleChecks, ErrorChecks, StreamingChecks, OperationChecks,
                         RankingChecks, DiscoveryChecks):
    """Subclass as ``Test<Something>`` and set :attr:`backend`; see the module docstring.

    Everything below the "what the author provides" line of
    :class:`~wasinn.testing.conformance.base.ConformanceBase` may be overridden.
    """

    pytestmark: ClassVar[list[pytest.MarkDecorator]] = [pytest.mark.wasinn_conformance]
