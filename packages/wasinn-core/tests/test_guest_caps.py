"""Every cap a guest's arguments run into is a ``Limits`` field, read by both ABIs (core modules and
components) from the store's limits; the module constants spell the defaults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import wasmtime
from wasmtime.component import ResourceHost, Variant

import wasinn
from wasinn.abi import ephemeral
from wasinn.component import interface, state
from wasinn.component.interface import (
    CONTEXT_TYPE_ID,
    context_compute,
    graph_load,
    graph_load_by_name,
    tensor_new,
)
from wasinn.component.state import ComponentState
from wasinn.enums import ErrorCode
from wasinn.limits import Limits
from wasinn.testing.guest import ERRNO, TrampolineGuest
from wasinn_test_backends import affine_model

LOW = Limits(max_builders=2, max_rank=3, max_name_bytes=8, max_config_bytes=16, max_named_tensors=1,
             max_tensors_per_store=2, max_errors_per_store=2)
NAME = "eightchr"  # 8 bytes: at the cap


@pytest.fixture
def low() -> Iterator[wasinn.WasiNnHost]:
    with wasinn.WasiNnHost(limits=LOW) as host:
        host.register_model(NAME, affine_model())
        yield host


def test_the_module_constants_are_the_defaults() -> None:
    default = Limits()
    assert (ephemeral.MAX_BUILDERS, ephemeral.MAX_RANK, ephemeral.MAX_NAME_BYTES, ephemeral.MAX_CONFIG_BYTES) == (
        default.max_builders, default.max_rank, default.max_name_bytes, default.max_config_bytes) == (
        16, 64, 4096, 1 << 20)
    assert (interface.MAX_BUILDERS, interface.MAX_RANK, interface.MAX_NAME_BYTES, interface.MAX_NAMED_TENSORS) == (
        16, 64, 4096, 1024) == (default.max_builders, default.max_rank, default.max_name_bytes,
                                default.max_named_tensors)
    assert (state.MAX_TENSORS_PER_STORE, state.MAX_ERRORS_PER_STORE) == (4096, 1024)


def test_a_core_module_meets_the_hosts_caps(low: wasinn.WasiNnHost) -> None:
    guest = TrampolineGuest(low)
    invalid = ERRNO["invalid_argument"]
    model = affine_model()
    assert guest.load([model, model, model]).errno == invalid  # 3 builders > 2
    assert guest.load_by_name(NAME + "x").errno == invalid  # 9 bytes > 8
    assert guest.load_by_name(NAME, '{"threads": 1234567}').errno == invalid  # 20 bytes > 16
    graph = guest.load_by_name(NAME, "{}").value
    assert graph is not None
    context = guest.init_execution_context(graph).value
    assert context is not None
    assert guest.set_input(context, 0, np.ones((1, 1, 1, 4), np.float32), 1).errno == invalid  # rank 4 > 3
    assert guest.set_input(context, 0, np.ones((1, 4), np.float32), 1).ok
    guest.close()


def _error(component: ComponentState, result: Any) -> tuple[ErrorCode, str]:
    err = result.payload if isinstance(result, Variant) else result
    assert isinstance(err, ResourceHost)
    entry = component.error(err.rep)
    return entry.code, entry.message


def test_a_component_meets_the_hosts_caps(low: wasinn.WasiNnHost) -> None:
    store = low.new_component_store(wasmtime.Engine())
    component = store.data()
    assert isinstance(component, ComponentState)
    model = affine_model()
    code, message = _error(component, graph_load(store, [model] * 3, "autodetect", "cpu"))
    assert code is ErrorCode.INVALID_ARGUMENT and "expected 1 to 2" in message
    assert _error(component, graph_load_by_name(store, NAME + "x"))[0] is ErrorCode.INVALID_ARGUMENT
    data = np.ones((1, 4), np.float32).tobytes()
    with pytest.raises(wasmtime.WasmtimeError, match="rank 4 exceeds 3"):
        tensor_new(store, [1, 1, 1, 4], "fp32", data)
    context = component.init_execution_context(component.load_by_name(NAME))
    first, second = tensor_new(store, [1, 4], "fp32", data), tensor_new(store, [1, 4], "fp32", data)
    with pytest.raises(wasmtime.WasmtimeError, match="holds 2 tensors"):
        tensor_new(store, [1, 4], "fp32", data)
    this = ResourceHost.own(context, CONTEXT_TYPE_ID)
    code, message = _error(component, context_compute(store, this, [("x", first), ("x", second)]))
    assert code is ErrorCode.INVALID_ARGUMENT and "2 named tensors (at most 1)" in message
    for _ in range(3):
        graph_load_by_name(store, "unknown")
    assert len(component.errors) == 2  # the oldest are forgotten past max_errors_per_store
    store.close()
