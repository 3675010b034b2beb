"""A guest's hostile ONNX models on ONNX Runtime: memory bounded and counted, log lines unforged.

* Bombs (``onnx_bomb_models.py``): a few hundred bytes asking for a gigabyte, at load (sparse tensors,
  node floods, constant folding) or at compute (ConstantOfShape, Expand, Tile, Range, Resize,
  Upsample, a broadcast, a Loop of Concat doublings; shapes from the file or from the guest's own
  inputs; f32, f64 and i64), or strings, which live outside every allocator. Each runs through a real
  guest in a child process: the exact errno, the peak RSS within a bound, and the host still serving.
* What a context keeps: its outputs are charged to the store's budget, and an output over
  ``max_tensor_bytes`` is not kept at all.
* Log lines: a node name or op type with a newline in it never becomes a line of its own, neither
  in the host's log nor in what ONNX Runtime writes to stderr.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from onnx import TensorProto, helper
from onnx_bomb_models import (
    BOMBS,
    TEST_LIMITS,
    MiB,
    big_output,
    first_failure,
    forged_lines,
    forging_models,
    good_model,
    run_forging_model,
)
from onnx_test_models import DIGITS_MODEL, LIGHT, LIGHT_MODELS

import wasinn
from wasinn import ErrorCode, Limits
from wasinn.abi.profiles import WITX_ERRORS
from wasinn.testing.guest import TrampolineGuest

WORKER = Path(__file__).resolve().parent / "onnx_bomb_models.py"
TOO_LARGE, UNSUPPORTED, INVALID = (WITX_ERRORS[c] for c in (ErrorCode.TOO_LARGE, ErrorCode.UNSUPPORTED_OPERATION,
                                                            ErrorCode.INVALID_ARGUMENT))
#: The arena guest sessions compute in is capped at max_runtime_bytes_per_context (128 MiB in the
#: tests); a bomb may grow the process by that much (the arena keeps what it got) and a little
#: bookkeeping, never by the gigabyte it asks for.
GROWTH_BOUND = TEST_LIMITS["max_runtime_bytes_per_context"] + 64 * MiB
#: The child's whole peak: about 100 MB of Python, wasmtime and ONNX Runtime, plus the growth.
PEAK_BOUND = 400 * 1000 * 1000
#: Bombs that must be refused when loaded (decided from the bytes, or from ORT's own output shapes).
AT_LOAD = {"sparse_initializer", "sparse_constant", "string_expand", "string_cast", "node_flood", "function_flood",
           "constant_of_shape_output_f32", "constant_of_shape_output_f64", "constant_of_shape_output_i64"}
EXPECTED = {"string_expand": UNSUPPORTED, "string_cast": UNSUPPORTED}


def run_bomb(variant: str, backend: str | None = None, timeout: float = 300) -> dict[str, object]:
    """Run the bomb worker in a child process; its RESULT (or a failure naming how it died)."""
    command = [sys.executable, str(WORKER), variant] + (["--backend", backend] if backend else [])
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=dict(os.environ))
    except subprocess.TimeoutExpired:
        pytest.fail(f"{variant}: no result within {timeout:.0f} s (the runtime is still building or running it)")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, (f"{variant}: worker exited {proc.returncode}\n"
                                            f"{proc.stderr[-3000:]}")
    result: dict[str, object] = json.loads(lines[-1][len("RESULT "):])
    return result


def check_bomb(result: dict[str, object], expected: int, at_load: bool) -> None:
    variant = result["variant"]
    growth = int(result["hwm_after"]) - int(result["hwm_start"])  # type: ignore[call-overload]
    step, errno = first_failure(result)
    report = f"{variant}: {step} errno {errno}, peak RSS {int(result['hwm_after']) / 1e6:.0f} MB " \
             f"(+{growth / 1e6:.0f} MB)"  # type: ignore[call-overload]
    print(report)
    assert errno == expected, report
    if at_load:
        assert step == "load", report
    assert growth < GROWTH_BOUND, report
    assert int(result["hwm_after"]) < PEAK_BOUND, report  # type: ignore[call-overload]
    assert result["good_before"] and result["good_after"] and result["good_new_store"], f"{report}: {result}"


@pytest.mark.parametrize("variant", sorted(BOMBS))
def test_guest_bomb_is_refused_within_bounded_memory(variant: str) -> None:
    # The onnx env has this backend alone: the default ranking picks it.
    result = run_bomb(variant)
    assert result.get("backend", "onnx") == "onnx"
    check_bomb(result, EXPECTED.get(variant, TOO_LARGE), variant in AT_LOAD)


# -- what contexts keep --------------------------------------------------------------------------------
@pytest.fixture
def guest_host() -> Iterator[wasinn.WasiNnHost]:
    # The per-context limit stays the default: it is also the cap of the arena every guest session
    # of this process computes in (set by the first guest model loaded).
    limits = Limits(max_tensor_bytes=16 * MiB, max_runtime_bytes_per_store=128 * MiB)
    with wasinn.WasiNnHost(limits=limits) as host:
        yield host


def _expand_by_input() -> bytes:
    """x f32[1], shape i64[1] -> Expand: the output's size is the guest's to choose, at compute."""
    proto = helper.make_model(helper.make_graph(
        [helper.make_node("Expand", ["x", "shape"], ["y"])], "expand",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1]),
         helper.make_tensor_value_info("shape", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None])]),
        opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    data: bytes = proto.SerializeToString()
    return data


def test_contexts_cannot_each_keep_a_large_preallocated_output(guest_host: wasinn.WasiNnHost) -> None:
    # 15 MiB of output per context (under the 16 MiB tensor limit), 128 MiB for the store: the
    # ninth context is refused when it is made, and finalizing one makes room for another.
    guest = TrampolineGuest(guest_host)
    bomb = big_output()
    graph = guest.load([bomb.model])
    assert graph.ok and graph.value is not None, graph
    made = []
    for _ in range(16):
        context = guest.init_execution_context(graph.value)
        if not context.ok:
            assert context.errno == TOO_LARGE, context
            break
        assert context.value is not None
        made.append(context.value)
        assert guest.set_input(context.value, 0, bomb.inputs[0]).ok
        assert guest.compute(context.value).ok
        guest.reset_heap()
    assert len(made) == 8, f"{len(made)} contexts each keep 15 MiB of output in a 128 MiB store"
    assert guest.state.tables.budget.held <= 128 * MiB
    assert guest.finalize_execution_context(made.pop()).ok
    assert guest.init_execution_context(graph.value).ok
    guest.close()


def test_contexts_cannot_each_keep_a_large_computed_output(guest_host: wasinn.WasiNnHost) -> None:
    # The same with an output ORT allocates at each run, sized by the guest's input.
    guest = TrampolineGuest(guest_host)
    graph = guest.load([_expand_by_input()])
    assert graph.ok and graph.value is not None, graph
    elements = np.array([15 * MiB // 4], np.int64)
    computed, refused = [], []
    for _ in range(12):
        context = guest.init_execution_context(graph.value)
        assert context.ok and context.value is not None, context
        assert guest.set_input(context.value, 0, np.ones(1, np.float32)).ok
        assert guest.set_input(context.value, 1, elements).ok
        errno = guest.compute(context.value).errno
        (computed if errno == 0 else refused).append((context.value, errno))
        guest.reset_heap()
    assert len(computed) == 8 and {errno for _, errno in refused} == {TOO_LARGE}, (computed, refused)
    assert guest.state.tables.budget.held <= 128 * MiB
    # The kept outputs are still there; the refused contexts hold no output.
    call, data = guest.get_output_bytes(computed[0][0], 0, max_bytes=16 * MiB)
    assert call.ok and len(data) == 15 * MiB
    assert guest.get_output_bytes(refused[0][0], 0)[0].errno == INVALID
    guest.close()


def test_an_output_over_the_tensor_limit_is_not_kept() -> None:
    # What the backend's own accounting holds, read from its context: in-process by nature (an
    # isolated worker runs this same code; the host sees its total as "isolated worker").
    limits = Limits(max_tensor_bytes=16 * MiB, max_runtime_bytes_per_store=128 * MiB, guest_models="in-process")
    with wasinn.WasiNnHost(limits=limits) as host:
        _output_over_the_limit(host)


def test_an_output_over_the_tensor_limit_is_not_kept_by_a_worker() -> None:
    # The same run isolated (the default): the store's charge for the worker follows what the
    # worker's context holds, after a refused run too (its output is gone there, so is the charge).
    limits = Limits(max_tensor_bytes=16 * MiB, max_runtime_bytes_per_store=128 * MiB)
    with wasinn.WasiNnHost(limits=limits) as host:
        guest = TrampolineGuest(host)
        graph = guest.load([_expand_by_input()])
        assert graph.ok and graph.value is not None
        context = guest.init_execution_context(graph.value)
        assert context.ok and context.value is not None
        entry = guest.state.tables.contexts[context.value]
        assert guest.set_input(context.value, 0, np.ones(1, np.float32)).ok
        assert guest.set_input(context.value, 1, np.array([MiB // 4], np.int64)).ok
        assert guest.compute(context.value).ok
        assert entry.context.budget.holding("isolated worker") >= MiB
        assert guest.set_input(context.value, 1, np.array([32 * MiB // 4], np.int64)).ok
        assert guest.compute(context.value).errno == TOO_LARGE
        assert entry.context.budget.holding("isolated worker") < MiB
        assert guest.get_output_bytes(context.value, 0)[0].errno == INVALID
        assert guest.set_input(context.value, 1, np.array([4], np.int64)).ok
        assert guest.compute(context.value).ok
        guest.close()


def _output_over_the_limit(host: wasinn.WasiNnHost) -> None:
    guest = TrampolineGuest(host)
    graph = guest.load([_expand_by_input()])
    assert graph.ok and graph.value is not None
    context = guest.init_execution_context(graph.value)
    assert context.ok and context.value is not None
    assert guest.set_input(context.value, 0, np.ones(1, np.float32)).ok
    assert guest.set_input(context.value, 1, np.array([MiB // 4], np.int64)).ok
    assert guest.compute(context.value).ok
    entry = guest.state.tables.contexts[context.value]
    assert entry.context.budget.holding("outputs") == MiB
    assert guest.set_input(context.value, 1, np.array([32 * MiB // 4], np.int64)).ok
    assert guest.compute(context.value).errno == TOO_LARGE  # at compute, not only at get_output
    assert entry.context.budget.holding("outputs") == 0  # the last run's output went too
    assert entry.context.state.results is None
    assert guest.get_output_bytes(context.value, 0)[0].errno == INVALID
    # The same context computes a smaller output afterwards.
    assert guest.set_input(context.value, 1, np.array([4], np.int64)).ok
    assert guest.compute(context.value).ok
    guest.close()


def _config_entry(session: object, key: str) -> str:
    try:
        return str(session.get_session_options().get_session_config_entry(key))  # type: ignore[attr-defined]
    except RuntimeError:  # not set
        return ""


def test_only_guest_models_compute_in_the_capped_arena() -> None:
    # The embedder's models are trusted: the guest-only settings leave them alone. (Both sessions are
    # read in this process; isolated, the guest's session is in its worker, made by this same code.)
    with wasinn.WasiNnHost(limits=Limits(guest_models="in-process")) as host:
        host.register_model("good", good_model())
        state = host.new_state()
        named = state.graph(state.load_by_name("good")).graph.state.session
        guest = state.graph(state.load([good_model()], wasinn.GraphEncoding.ONNX, wasinn.ExecutionTarget.CPU)
                            ).graph.state.session
        assert _config_entry(named, "session.use_env_allocators") == ""
        assert _config_entry(guest, "session.use_env_allocators") == "1"
        state.close()


# -- load-time checks of the bytes: more spellings --------------------------------------------------------
def _graph_model(nodes: list[object], inputs: list[object], outputs: list[object], initializers: list[object] = (),
                 opset: int = 13, domains: dict[str, int] | None = None, **extra: object) -> bytes:
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, v) for d, v in (domains or {}).items()]
    proto = helper.make_model(helper.make_graph(nodes, "m", inputs, outputs, initializer=list(initializers)),
                              opset_imports=opsets, ir_version=8, **extra)
    data: bytes = proto.SerializeToString()
    return data


def _f32(name: str, shape: list[int | str | None] | None = None) -> object:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, [1] if shape is None else shape)


def _strings_variants() -> dict[str, bytes]:
    text = helper.make_tensor("t", TensorProto.STRING, [1], [b"abc"])
    shape = helper.make_tensor("shape", TensorProto.INT64, [1], [4])
    y_str = helper.make_tensor_value_info("y", TensorProto.STRING, None)
    loop_body = helper.make_graph(
        [helper.make_node("Identity", ["c"], ["c_out"]),
         helper.make_node("Cast", ["x_in"], ["s"], to=TensorProto.STRING),
         helper.make_node("Identity", ["x_in"], ["x_out"])],
        "body", [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                 helper.make_tensor_value_info("c", TensorProto.BOOL, []), _f32("x_in", None)],
        [helper.make_tensor_value_info("c_out", TensorProto.BOOL, []), _f32("x_out", None),
         helper.make_tensor_value_info("s", TensorProto.STRING, None)])
    function = helper.make_function("local", "to_text", ["x"], ["y"],
                                    [helper.make_node("Cast", ["x"], ["y"], to=TensorProto.STRING)],
                                    [helper.make_opsetid("", 13)])
    return {
        "initializer": _graph_model([helper.make_node("Identity", ["t"], ["y"])], [], [y_str], [text]),
        "constant_value": _graph_model([helper.make_node("Constant", [], ["y"], value=text)], [], [y_str]),
        "constant_value_string": _graph_model([helper.make_node("Constant", [], ["y"], value_string="abc")], [],
                                              [y_str]),
        "constant_value_strings": _graph_model([helper.make_node("Constant", [], ["y"], value_strings=["a", "b"])], [],
                                               [y_str]),
        "constant_of_shape_value": _graph_model([helper.make_node("ConstantOfShape", ["shape"], ["y"], value=text)], [],
                                                [y_str], [shape]),
        "cast": _graph_model([helper.make_node("Cast", ["x"], ["y"], to=TensorProto.STRING)], [_f32("x")], [y_str]),
        "sequence_empty": _graph_model([helper.make_node("SequenceEmpty", [], ["y"], dtype=TensorProto.STRING)], [],
                                       [helper.make_tensor_sequence_value_info("y", TensorProto.STRING, None)]),
        "label_encoder": _graph_model(
            [helper.make_node("LabelEncoder", ["x"], ["y"], domain="ai.onnx.ml", keys_int64s=[1],
                              values_strings=["a"])],
            [helper.make_tensor_value_info("x", TensorProto.INT64, [1])], [y_str], domains={"ai.onnx.ml": 2}),
        "zipmap_labels": _graph_model(
            [helper.make_node("ZipMap", ["x"], ["y"], domain="ai.onnx.ml", classlabels_strings=["a"])],
            [_f32("x", [1, 1])],
            [helper.make_value_info("y", helper.make_sequence_type_proto(helper.make_map_type_proto(
                TensorProto.STRING, helper.make_tensor_type_proto(TensorProto.FLOAT, None))))],
            domains={"ai.onnx.ml": 1}),
        "loop_body": _graph_model(
            [helper.make_node("Loop", ["n", "c", "x"], ["x_final", "y"], body=loop_body)],
            [helper.make_tensor_value_info("n", TensorProto.INT64, []),
             helper.make_tensor_value_info("c", TensorProto.BOOL, []),
             _f32("x")], [_f32("x_final"), y_str]),
        "function_body": _graph_model([helper.make_node("to_text", ["x"], ["y"], domain="local")], [_f32("x")], [y_str],
                                      domains={"local": 1}, functions=[function]),
    }


@pytest.mark.parametrize("spelling", sorted(_strings_variants()))
def test_string_tensors_are_refused_in_every_spelling(spelling: str) -> None:
    with wasinn.WasiNnHost() as host:
        guest = TrampolineGuest(host)
        assert guest.load([_strings_variants()[spelling]]).errno == UNSUPPORTED
        guest.close()


def test_recursive_functions_are_refused() -> None:
    function = helper.make_function("local", "f", ["x"], ["y"], [helper.make_node("f", ["x"], ["y"], domain="local")],
                                    [helper.make_opsetid("", 13), helper.make_opsetid("local", 1)])
    data = _graph_model([helper.make_node("f", ["x"], ["y"], domain="local")], [_f32("x")], [_f32("y")],
                        domains={"local": 1}, functions=[function])
    with wasinn.WasiNnHost() as host:
        guest = TrampolineGuest(host)
        assert guest.load([data]).errno == INVALID
        guest.close()


def test_a_file_of_tiny_fields_is_refused_before_it_is_walked_for_long() -> None:
    # 100,000 unknown varint fields in the graph: nothing to a runtime's parser, but each one a step
    # of the host's check, which stops at 64 per node allowed (1024 nodes with these limits).
    graph = b"\xa0\x06\x01" * 100_000 + bytes(helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                                                  [_f32("x")], [_f32("y")]).SerializeToString())
    model = helper.make_model(helper.make_graph([], "g", [], []), opset_imports=[helper.make_opsetid("", 13)],
                              ir_version=8)
    model.ClearField("graph")
    data = model.SerializeToString() + b"\x3a" + _varint(len(graph)) + graph
    with wasinn.WasiNnHost() as host:
        guest = TrampolineGuest(host)
        assert guest.load([data]).ok  # the host's default limits: 8 million fields
        guest.close()
    with wasinn.WasiNnHost(limits=Limits(max_runtime_bytes_per_context=8 * MiB)) as host:
        guest = TrampolineGuest(host)
        assert guest.load([data]).errno == TOO_LARGE
        guest.close()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


@pytest.mark.parametrize("name", [*LIGHT_MODELS, "digits"])
def test_real_models_pass_the_guest_checks(name: str) -> None:
    # What the checks refuse must not be what real models are made of.
    path = DIGITS_MODEL if name == "digits" else LIGHT / f"light_{name}.onnx"
    with wasinn.WasiNnHost() as host:
        guest = TrampolineGuest(host)
        assert guest.load([path.read_bytes()]).ok
        guest.close()


# -- log lines a guest writes -------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", sorted(forging_models()))
def test_a_guest_cannot_forge_a_log_line(spelling: str, caplog: pytest.LogCaptureFixture,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    data, feed = forging_models()[spelling]
    caplog.set_level(logging.DEBUG)
    with wasinn.WasiNnHost() as host:
        errnos = run_forging_model(host, data, feed)
    assert any(errnos), f"{spelling}: the model did not fail ({errnos})"
    out, err = capfd.readouterr()
    assert "FORGED" in caplog.text, "the failure was not logged at all"
    forged = forged_lines(caplog.text + out + err)
    assert not forged, f"{spelling}: a forged line reached the log: {forged}"
    for record in caplog.records:
        message = record.getMessage()
        assert message.isprintable(), f"{spelling}: unescaped control characters in {message!r}"
        assert record.exc_info is None or "FORGED" not in str(record.exc_info[1]), "a traceback carries the text raw"
