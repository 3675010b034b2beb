"""A guest's TFLite bytes are read by OpenVINO in a child process; the host reads only the IR it hands back.

Issue 26, row 6: with the tflite backend denied or not installed, the ranking hands a guest's TFLite
file to OpenVINO, whose TFLite reader had no flatbuffer verifier before 2026 (OpenVINO PRs 34071:
buffer sizes and ``VerifyModelBuffer``, and 35607: a null tensor name, SIGSEGV), while this package
accepts ``openvino>=2024.0``. So the host never runs that reader on guest bytes: a child reads the
file, saves it as IR, compiles it and runs it once; the host reads the IR (see ``_tflite_child``).

That child is how a host that runs a guest's model in its own process (``Limits(guest_models=
"in-process")``) reads it, so the tests of the child say so. By default (``"isolate"``) the guest's
model is in a confined worker, which reads the TFLite itself (it is the throwaway process): the
last tests here check that no child runs then, the host's OpenVINO reads nothing, and the outputs
and errors are the same.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import openvino as ov
import pytest
from ov_helpers import DIGITS_MODELS, REPO, WAMR_MODELS, load_named, new_host, run_graph

from wasinn import ErrorCode, ExecutionTarget, GraphEncoding, Limits, WasiNnError
from wasinn.worker import probe
from wasinn_backend_openvino import _tflite_child

TFLITE = GraphEncoding.TENSORFLOWLITE
#: The child reads a guest's TFLite for a host that loads the guest's models in its own process.
IN_PROCESS = Limits(guest_models="in-process")
TFLITE_DATA = REPO / "packages" / "wasinn-backend-tflite" / "tests" / "data"
MODELS = {
    "digits": (DIGITS_MODELS / "digits.tflite", [np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 64)]),
    "sum": (WAMR_MODELS / "sum.tflite", [np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)]),
    "mult_out": (WAMR_MODELS / "mult_out.tflite", [np.arange(16, dtype=np.float32).reshape(1, 4, 4, 1)]),
}


@pytest.fixture
def children(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The script and arguments of every probe process started (they still run)."""
    started: list[list[str]] = []
    real: Callable[..., Any] = probe.run_probe

    def spy(script: str, args: list[str], *rest: Any, **kwargs: Any) -> Any:
        started.append([script, *map(str, args)])
        return real(script, args, *rest, **kwargs)

    monkeypatch.setattr(probe, "run_probe", spy)
    return started


@pytest.fixture
def host_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What this process's OpenVINO ``Core.read_model`` was asked to read (a path, or "<bytes>")."""
    seen: list[str] = []
    real = ov.Core.read_model

    def spy(self: ov.Core, model: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(model if isinstance(model, str) else "<bytes>" if isinstance(model, bytes) else repr(model))
        return real(self, model, *args, **kwargs)

    monkeypatch.setattr(ov.Core, "read_model", spy)
    return seen


def _probe_children(started: list[list[str]]) -> int:
    return sum(1 for argv in started if _tflite_child._SCRIPT in argv)


def run_guest_bytes(data: bytes, inputs: list[np.ndarray], limits: Limits = IN_PROCESS) -> list[np.ndarray]:
    with new_host(limits=limits) as host:
        state = host.new_state()
        return run_graph(state, state.load([data], TFLITE, ExecutionTarget.CPU), inputs)


@pytest.mark.parametrize("name", MODELS)
def test_guest_tflite_is_read_in_a_child_and_gives_the_same_outputs(name: str, children: list[list[str]],
                                                                     host_reads: list[str],
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    path, inputs = MODELS[name]
    outputs = run_guest_bytes(path.read_bytes(), inputs)
    assert _probe_children(children) == 1
    # The host read IR from memory, never a TFLite file.
    assert host_reads == ["<bytes>"], host_reads
    monkeypatch.setenv(_tflite_child.PROBE_ENV, "never")  # the old way, for reference: read in the host
    host_reads.clear()
    expected = run_guest_bytes(path.read_bytes(), inputs)
    assert len(host_reads) == 1 and host_reads[0].endswith(".tflite")
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_array_equal(got, want)


def test_probe_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(_tflite_child.PROBE_ENV, raising=False)
    assert _tflite_child.wanted(trusted=False) and not _tflite_child.wanted(trusted=True)
    monkeypatch.setenv(_tflite_child.PROBE_ENV, "always")
    assert _tflite_child.wanted(trusted=True)
    monkeypatch.setenv(_tflite_child.PROBE_ENV, "never")
    assert not _tflite_child.wanted(trusted=False)


def test_a_named_tflite_model_is_the_embedders_and_read_in_process(children: list[list[str]],
                                                                    host_reads: list[str],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    path = WAMR_MODELS / "sum.tflite"
    with new_host() as host:
        load_named(host, "sum", path, {"cache_dir": None})
    assert _probe_children(children) == 0 and host_reads == [str(path)]
    monkeypatch.setenv(_tflite_child.PROBE_ENV, "always")  # the embedder distrusts its own models too
    host_reads.clear()
    with new_host() as host:
        load_named(host, "sum", path, {"cache_dir": None})
    assert _probe_children(children) == 1 and host_reads == ["<bytes>"]


REFUSED = pytest.mark.parametrize(("builders", "code", "words"), [
    (lambda: [(DIGITS_MODELS / "digits.tflite").read_bytes()[:300]], ErrorCode.INVALID_ARGUMENT,
     "not a valid tflite model for OpenVINO: .*corrupted or malformed"),
    (lambda: [(b := (DIGITS_MODELS / "digits.tflite").read_bytes())[:8] + bytes(len(b) - 8)],
     ErrorCode.INVALID_ARGUMENT, r"not a valid tflite model for OpenVINO: .*no subgraphs in file: \"model.tflite\""),
    (lambda: [(TFLITE_DATA / "degenerate_uninitialized_read.tflite").read_bytes()], ErrorCode.INVALID_ARGUMENT,
     "already produced by previous operators"),
    (lambda: [(TFLITE_DATA / "custom_op.tflite").read_bytes()], ErrorCode.UNSUPPORTED_OPERATION,
     "WasinnNoSuchOp"),
], ids=["truncated", "zeroed", "uninitialized-read", "custom-op"])


@REFUSED
def test_what_openvino_refuses_in_the_child_keeps_its_error_code(builders: Callable[[], list[bytes]],
                                                                   code: ErrorCode, words: str,
                                                                   children: list[list[str]],
                                                                   host_reads: list[str]) -> None:
    with new_host(limits=IN_PROCESS) as host:
        state = host.new_state()
        with pytest.raises(WasiNnError, match=words) as caught:
            state.load(builders(), TFLITE, ExecutionTarget.CPU)
    assert caught.value.code is code
    assert _probe_children(children) == 1 and host_reads == []


def test_a_crash_in_the_child_is_invalid_argument_and_leaves_no_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       host_reads: list[str]) -> None:
    # The reader's process dies of SIGSEGV, as it would on a hostile file (its script is replaced; the
    # process, its confinement and the host's handling are the real ones).
    monkeypatch.setattr(_tflite_child.CHILD, "script", "import ctypes\nctypes.string_at(0)\n")
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with new_host(limits=IN_PROCESS) as host:
        state = host.new_state()
        with pytest.raises(WasiNnError, match=r"crashes OpenVINO's TFLite reader \(SIGSEGV") as caught:
            state.load([(WAMR_MODELS / "sum.tflite").read_bytes()], TFLITE, ExecutionTarget.CPU)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert host_reads == [] and list(scratch.iterdir()) == []


# -- the default: the guest's model in an isolated worker ---------------------------------------------
@pytest.mark.parametrize("name", MODELS)
def test_guest_tflite_in_a_worker_is_read_there_and_gives_the_same_outputs(name: str, children: list[list[str]],
                                                                          host_reads: list[str],
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    path, inputs = MODELS[name]
    outputs = run_guest_bytes(path.read_bytes(), inputs, Limits())
    # No child process, and this process's OpenVINO read nothing: the worker read the guest's file.
    assert _probe_children(children) == 0 and host_reads == [], (children, host_reads)
    monkeypatch.setenv(_tflite_child.PROBE_ENV, "never")  # OpenVINO reading the file in this process
    expected = run_guest_bytes(path.read_bytes(), inputs)
    assert len(host_reads) == 1 and host_reads[0].endswith(".tflite")
    assert len(outputs) == len(expected)
    for got, want in zip(outputs, expected, strict=True):
        np.testing.assert_array_equal(got, want)


@REFUSED
def test_what_openvino_refuses_in_a_worker_keeps_its_error_code(builders: Callable[[], list[bytes]],
                                                                  code: ErrorCode, words: str,
                                                                  children: list[list[str]],
                                                                  host_reads: list[str]) -> None:
    # The same code and words as from the child; OpenVINO's message names "model.tflite", not the
    # worker's own path for the guest's bytes.
    with new_host() as host:
        state = host.new_state()
        with pytest.raises(WasiNnError, match=words) as caught:
            state.load(builders(), TFLITE, ExecutionTarget.CPU)
        assert "wasinn-worker-" not in caught.value.message and "/proc/" not in caught.value.message
        assert caught.value.code is code
        # The host and the store go on: the same host loads and runs a good model next.
        (y,) = run_graph(state, state.load([(WAMR_MODELS / "sum.tflite").read_bytes()], TFLITE,
                                           ExecutionTarget.CPU), [np.arange(25, dtype=np.float32).reshape(1, 5, 5, 1)])
        assert y.ravel().tolist() == [300.0]
    assert _probe_children(children) == 0 and host_reads == []
