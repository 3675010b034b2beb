"""One classifier for both ABIs: a WasiNnError is the guest's failure (its code, one guest-log line); any
other exception inside a host call is a bug in wasinn, logged once with its traceback, and the guest gets
``runtime_error`` (an errno from a core module's import, an ``error`` resource from a component's)."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import wasmtime
from wasmtime.component import ResourceHost

import wasinn
from wasinn.component.interface import CONTEXT_TYPE_ID, TENSOR_TYPE_ID, context_compute
from wasinn.component.state import ComponentState, TensorEntry
from wasinn.enums import ErrorCode, TensorType
from wasinn.testing.guest import ERRNO, TrampolineGuest
from wasinn_test_backends import affine_model


def _boom(self: object, handle: int) -> None:
    raise ValueError("boom")


def _internal(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.ERROR and "internal error in wasinn" in r.getMessage()]


def test_a_bug_in_a_core_module_call_is_runtime_error_logged_once(
        host: wasinn.WasiNnHost, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    guest = TrampolineGuest(host)
    context = guest.init_execution_context(guest.load([affine_model()]).value).value  # type: ignore[arg-type]
    assert context is not None
    monkeypatch.setattr(type(guest.state), "compute", _boom)
    with caplog.at_level(logging.DEBUG, logger="wasinn"):
        assert guest.compute(context).errno == ERRNO["runtime_error"]
    records = _internal(caplog)
    assert len(records) == 1 and records[0].exc_info is not None
    assert records[0].getMessage() == "compute: internal error in wasinn: ValueError: boom"
    assert not [r for r in caplog.records if r.levelno == logging.WARNING and "compute ->" in r.getMessage()]
    monkeypatch.undo()
    assert guest.compute(context).errno == ERRNO["invalid_argument"]  # no input yet: the guest's failure
    guest.close()


def test_a_bug_in_a_component_call_is_a_runtime_error_resource_logged_once(
        host: wasinn.WasiNnHost, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    store = host.new_component_store(wasmtime.Engine())
    state = store.data()
    assert isinstance(state, ComponentState)
    context = state.init_execution_context(state.load([affine_model()], wasinn.GraphEncoding.AUTODETECT,
                                                      wasinn.ExecutionTarget.CPU))
    data = np.ones((1, 4), np.float32).tobytes()
    tensor = ResourceHost.own(state.add_tensor(TensorEntry((1, 4), TensorType.F32, data)), TENSOR_TYPE_ID)
    monkeypatch.setattr(type(state), "compute", _boom)
    with caplog.at_level(logging.DEBUG, logger="wasinn"):
        result = context_compute(store, ResourceHost.own(context, CONTEXT_TYPE_ID), [("x", tensor)])
    assert isinstance(result, ResourceHost)
    entry = state.error(result.rep)
    assert entry.code is ErrorCode.RUNTIME_ERROR and entry.operation == "compute"
    assert entry.message == "internal error in wasinn: ValueError: boom"
    records = _internal(caplog)
    assert len(records) == 1 and records[0].exc_info is not None
    assert not [r for r in caplog.records if r.levelno == logging.WARNING and "compute ->" in r.getMessage()]
    store.close()
