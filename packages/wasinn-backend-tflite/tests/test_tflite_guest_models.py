"""Guest models the backend must refuse at load, and what a refused model must not keep alive.

Issue 26, rows 6, 7 and 11, from the tflite backend's side (tests/hostile/test_guest_tflite_models.py
has the same with every backend installed):

* a file the verifier refuses is a *malformed* decline, which ends the ranking: no runner-up backend
  (OpenVINO reads TFLite too) is handed it;
* a refused model leaves nothing behind: the verify cache used to keep the ModelError, whose
  traceback held the guest's call frames and through them the store, its graphs and its contexts,
  after the embedder closed it;
* degenerate graphs (no operators, no outputs, an output or an operator input nothing writes, ...)
  are refused at load with invalid_argument, instead of loading and failing later (a model with no
  operators raised a ValueError inside get_output).

Every guest here goes through the default ranking: a ``WasiNnHost()`` that found its backends by
entry point, and a real wasm guest calling ``load``.
"""

from __future__ import annotations

import gc
import logging
import struct
import weakref
from collections.abc import Callable

import pytest
from tflite_testlib import DATA, DIGITS_MODEL, WAMR

import wasinn_backend_tflite
from wasinn import Decline, ErrorCode, ExecutionTarget, GraphEncoding, Score, WasiNnHost
from wasinn.testing.guest import ERRNO, TrampolineGuest
from wasinn_backend_tflite import backend
from wasinn_backend_tflite._verify import ModelError, verify

# Each degenerate graph (tests/data/make_models.py writes them) and what the verifier says about it.
DEGENERATE = {
    "no_operators": "subgraph 0 has no operators",
    "no_operators_identity": "subgraph 0 has no operators",
    "no_operators_constant": "subgraph 0 has no operators",
    "no_outputs": "subgraph 0 has no outputs",
    "unwritten_output": "output tensor 1 is never written",
    "uninitialized_read": "reads tensor 2, which no earlier operator writes",
    "read_before_write": "reads tensor 2, which no earlier operator writes",
    "unwritten_subgraph_output": "subgraph 1 output tensor 1 is never written",
    "no_subgraphs": "the model has no subgraphs",
    "call_once_cycle": "subgraphs call each other in a loop: 1 -> 2 -> 1",
    "while_calls_itself": "subgraphs call each other in a loop: 0 -> 0",
    "external_buffer": "external buffer 1",
}


def degenerate(kind: str) -> bytes:
    return (DATA / f"degenerate_{kind}.tflite").read_bytes()


def _patched_u32(data: bytes, position: int, value: int) -> bytes:
    return data[:position] + struct.pack("<I", value) + data[position + 4:]


# Files the verifier refuses, several spellings: structure, meaning, degenerate graphs.
MALFORMED: dict[str, Callable[[], list[bytes]]] = {
    "truncated-header": lambda: [DIGITS_MODEL.read_bytes()[:64]],
    "truncated-half": lambda: [(b := DIGITS_MODEL.read_bytes())[:len(b) // 2]],
    "root-offset-outside": lambda: [_patched_u32(DIGITS_MODEL.read_bytes(), 0, 0xFFFFFF00)],
    "root-offset-to-the-end": lambda: [_patched_u32((b := DIGITS_MODEL.read_bytes()), 0, len(b) - 4)],
    "zeroed-body": lambda: [(b := DIGITS_MODEL.read_bytes())[:8] + bytes(len(b) - 8)],
    "split-without-options": lambda: [(DATA / "no_split_options.tflite").read_bytes()],
    "batch-matmul-one-input": lambda: [(DATA / "one_input_batch_matmul.tflite").read_bytes()],
    **{f"degenerate-{kind}": (lambda kind=kind: [degenerate(kind)]) for kind in DEGENERATE},  # type: ignore[misc]
}


@pytest.fixture
def default_host() -> WasiNnHost:
    """The production setup: backends found by entry point, nothing forced."""
    return WasiNnHost()


# -- row 11: degenerate graphs ---------------------------------------------------------------------
@pytest.mark.parametrize("kind", DEGENERATE)
def test_degenerate_graph_is_refused_by_the_verifier(kind: str):
    with pytest.raises(ModelError, match=DEGENERATE[kind]):
        verify(degenerate(kind))


@pytest.mark.parametrize("encoding", ["autodetect", "tensorflowlite"])
@pytest.mark.parametrize("kind", DEGENERATE)
def test_degenerate_graph_is_refused_at_load_through_the_default_ranking(default_host: WasiNnHost, kind: str,
                                                                          encoding: str,
                                                                          caplog: pytest.LogCaptureFixture):
    guest = TrampolineGuest(default_host)
    try:
        with caplog.at_level(logging.INFO, logger="wasinn"):
            loaded = guest.load([degenerate(kind)], encoding)
        assert loaded.errno == ERRNO["invalid_argument"], (kind, loaded)
        assert guest.state.graph_count == 0
        # The log line says why, and which backend found the file malformed.
        assert any(DEGENERATE[kind] in record.getMessage() and "malformed" in record.getMessage()
                   for record in caplog.records), [r.getMessage() for r in caplog.records]
    finally:
        guest.close()


def test_a_model_with_operators_after_the_degenerate_checks_still_loads_and_runs(default_host: WasiNnHost):
    # The control: real models (several ops, constants, dynamic shapes, two outputs) pass.
    guest = TrampolineGuest(default_host)
    try:
        for path in (DIGITS_MODEL, WAMR / "mult_out.tflite", DATA / "affine.tflite", DATA / "quant.tflite"):
            loaded = guest.load([path.read_bytes()], "autodetect")
            assert loaded.errno == 0, path
    finally:
        guest.close()


# -- row 6: a verifier refusal ends the ranking ----------------------------------------------------
@pytest.mark.parametrize("target", [ExecutionTarget.CPU, ExecutionTarget.GPU, ExecutionTarget.TPU])
@pytest.mark.parametrize("name", MALFORMED)
def test_a_verifier_refusal_is_a_malformed_decline(default_host: WasiNnHost, name: str, target: ExecutionTarget):
    # Whatever the target (a GPU without a delegate is an unsupported_operation of its own): the file
    # comes first, so a malformed file is never passed on as merely "not for this target".
    model = default_host.describe_model(MALFORMED[name](), encoding=GraphEncoding.TENSORFLOWLITE, target=target)
    answer = wasinn_backend_tflite.can_handle(model=model, hw=default_host.hardware)
    assert isinstance(answer, Decline), answer
    assert answer.malformed and answer.code is ErrorCode.INVALID_ARGUMENT, answer
    assert "malformed TFLite model" in answer.reason
    ranking = default_host.explain(MALFORMED[name](), target=target, encoding=GraphEncoding.TENSORFLOWLITE)
    assert ranking.winner is None and ranking.malformed is not None and ranking.malformed.backend == "tflite"


def test_declines_that_are_not_about_the_file_are_not_malformed(default_host: WasiNnHost):
    hw = default_host.hardware
    custom = default_host.describe_model([(DATA / "custom_op.tflite").read_bytes()])
    answer = wasinn_backend_tflite.can_handle(model=custom, hw=hw)
    assert isinstance(answer, Decline) and answer.code is ErrorCode.UNSUPPORTED_OPERATION and not answer.malformed
    gpu = default_host.describe_model([DIGITS_MODEL.read_bytes()], target=ExecutionTarget.GPU)
    answer = wasinn_backend_tflite.can_handle(model=gpu, hw=hw)
    assert isinstance(answer, Decline) and answer.code is ErrorCode.UNSUPPORTED_OPERATION and not answer.malformed
    configured = default_host.describe_model([DIGITS_MODEL.read_bytes()], config={"num_threads": 0})
    answer = wasinn_backend_tflite.can_handle(model=configured, hw=hw)
    assert isinstance(answer, Decline) and answer.code is ErrorCode.INVALID_ARGUMENT and not answer.malformed
    good = default_host.describe_model([DIGITS_MODEL.read_bytes()])
    assert isinstance(wasinn_backend_tflite.can_handle(model=good, hw=hw), Score)


@pytest.mark.parametrize("name", MALFORMED)
def test_a_malformed_file_is_invalid_argument_for_the_guest(default_host: WasiNnHost, name: str):
    guest = TrampolineGuest(default_host)
    try:
        for encoding in ("autodetect", "tensorflowlite"):
            assert guest.load(MALFORMED[name](), encoding).errno == ERRNO["invalid_argument"], (name, encoding)
    finally:
        guest.close()


# -- row 7: a refused model keeps nothing alive ----------------------------------------------------
def test_the_verify_cache_keeps_no_refusal(default_host: WasiNnHost):
    for name, make in MALFORMED.items():
        builders = make()
        model = default_host.describe_model(builders, encoding=GraphEncoding.TENSORFLOWLITE)
        assert isinstance(wasinn_backend_tflite.can_handle(model=model, hw=default_host.hardware), Decline), name
        assert all(held is not model.builders[0] for held, _ in backend._verified.entries), name
    assert not any(isinstance(result, BaseException) for _, result in backend._verified.entries)


@pytest.mark.parametrize("bad_models", [1, 4, len(MALFORMED)])
def test_a_closed_store_that_loaded_malformed_models_is_freed(default_host: WasiNnHost, bad_models: int):
    guest = TrampolineGuest(default_host)
    # Live things in the store: two graphs, a context that computed.
    first = guest.load([DIGITS_MODEL.read_bytes()], "autodetect")
    second = guest.load([(WAMR / "sum.tflite").read_bytes()], "autodetect")
    assert first.ok and second.ok and first.value is not None and second.value is not None
    context = guest.init_execution_context(first.value)
    assert context.ok
    graphs = [weakref.ref(guest.state.graph(h).graph.state) for h in (first.value, second.value)]
    # Then the guest loads malformed files, each refused.
    for builders in [make() for make in MALFORMED.values()][:bad_models]:
        assert guest.load(builders, "autodetect").errno == ERRNO["invalid_argument"]
    store = weakref.ref(guest.state)

    guest.close()  # the embedder closes the store
    del guest, context
    gc.collect()

    assert store() is None, "the closed store is still alive: " + _referrers(store())
    assert [ref() for ref in graphs] == [None, None]


def _referrers(obj: object) -> str:
    return ", ".join(sorted({type(r).__name__ for r in gc.get_referrers(obj)}))
