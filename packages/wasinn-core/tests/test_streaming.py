"""The streaming calls (WasmEdge's compute_single / get_output_single / fini_single), the GGML error
codes of each numbering, and WasmEdge's ``preload:<path>`` builder, against test-only backends."""

from __future__ import annotations

import types
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import wasinn
from wasinn.abi.ephemeral import FUNCTIONS
from wasinn.abi.profiles import PROFILES
from wasinn.enums import ErrorCode
from wasinn.testing.guest import TrampolineGuest
from wasinn_test_backends import affine_model
from wasinn_test_backends.stream import make_model

ALL = {name: arity for name, (arity, _) in FUNCTIONS.items()}  # streaming imports: the wasmedge profile
WASMEDGE = PROFILES["wasmedge"]


@pytest.fixture(autouse=True)
def _with_stream_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASINN_BACKENDS", "fake,fakestream")


@pytest.fixture
def wguest(host: wasinn.WasiNnHost) -> Iterator[TrampolineGuest]:
    g = TrampolineGuest(host, functions=ALL)
    yield g
    g.close()


def stream(guest: TrampolineGuest, ctx: int, limit: int = 100) -> tuple[list[bytes], int]:
    pieces = []
    for _ in range(limit):
        errno = guest.compute_single(ctx).errno
        if errno:
            return pieces, errno
        call, piece = guest.get_output_single_bytes(ctx, 0)
        assert call.ok
        pieces.append(piece)
    raise AssertionError("the stream did not end")


def test_streaming_dispatch_and_end_of_sequence(wguest: TrampolineGuest) -> None:
    assert wguest.state.profile is WASMEDGE  # chosen from the streaming imports
    graph = wguest.load([make_model(2)])
    assert graph.ok, graph.errno
    ctx = wguest.init_execution_context(graph.value)  # type: ignore[arg-type]
    assert ctx.ok
    c = ctx.value
    assert c is not None
    assert wguest.set_input(c, 0, np.frombuffer(b"hello", np.uint8)).ok
    pieces, errno = stream(wguest, c)
    assert pieces == [b"he", b"ll", b"o"]
    assert errno == 100  # EndOfSequence under the WasmEdge numbering
    assert wguest.fini_single(c).ok
    # after fini_single the same input streams again from the start
    pieces, errno = stream(wguest, c)
    assert b"".join(pieces) == b"hello" and errno == 100
    # and compute (the whole generation) still works on the same context
    assert wguest.compute(c).ok
    assert wguest.get_output_bytes(c, 0)[1] == b"hello"


def test_any_length_input_takes_n_bytes_with_dims_1(wguest: TrampolineGuest) -> None:
    graph = wguest.load([make_model(5)])
    c = wguest.init_execution_context(graph.value).value  # type: ignore[arg-type]
    assert c is not None
    record = wguest.tensor_record(b"abcdefgh", [1], 3)  # u8, dims [1], 8 bytes: WasmEdge's prompt tensor
    assert wguest.call("set_input", c, 0, record) == 0
    assert stream(wguest, c)[0] == [b"abcde", b"fgh"]


def test_any_length_is_only_for_inputs_that_say_so(wguest: TrampolineGuest) -> None:
    graph = wguest.load([affine_model(dtype="u8", shape=(1, 4))])
    c = wguest.init_execution_context(graph.value).value  # type: ignore[arg-type]
    assert c is not None
    assert wguest.call("set_input", c, 0, wguest.tensor_record(b"abcdefgh", [1], 3)) == 1


def test_small_step_buffer_is_too_large_with_the_size(wguest: TrampolineGuest) -> None:
    graph = wguest.load([make_model(4)])
    ctx = wguest.init_execution_context(graph.value)  # type: ignore[arg-type]
    c = ctx.value
    assert c is not None
    wguest.set_input(c, 0, np.frombuffer(b"abcdef", np.uint8))
    assert wguest.compute_single(c).ok
    call, _ = wguest.get_output_single_bytes(c, 0, max_bytes=2)
    assert call.errno == 7 and call.value == 4


def test_backend_without_streaming_is_unsupported_operation(wguest: TrampolineGuest) -> None:
    graph = wguest.load([affine_model()])
    ctx = wguest.init_execution_context(graph.value)  # type: ignore[arg-type]
    c = ctx.value
    assert c is not None
    assert wguest.compute_single(c).errno == 6
    assert wguest.get_output_single_bytes(c, 0)[0].errno == 6
    assert wguest.fini_single(c).errno == 6


def test_unknown_context_is_invalid_argument(wguest: TrampolineGuest) -> None:
    assert wguest.compute_single(42).errno == 1
    assert wguest.get_output_single_bytes(42, 0)[0].errno == 1
    assert wguest.fini_single(42).errno == 1


@pytest.mark.parametrize(("profile", "expected"), [
    ("wasmedge", (100, 101, 102, 103)),
    ("wasmedge-0.14", (100, 101, 102, 103)),
    ("wamr", (100, 101, 102, 8)),
    ("witx", (5, 7, 7, 8)),
    ("wamr-2.1", (4, 6, 6, 7)),
])
def test_ggml_error_codes_per_profile(profile: str, expected: tuple[int, ...]) -> None:
    codes = (ErrorCode.END_OF_SEQUENCE, ErrorCode.CONTEXT_FULL, ErrorCode.PROMPT_TOO_LONG, ErrorCode.NOT_FOUND)
    assert tuple(PROFILES[profile].errno(code) for code in codes) == expected


def test_every_profile_numbers_every_error_code() -> None:
    for profile in PROFILES.values():
        for code in ErrorCode:
            assert profile.errno(code) > 0


def test_preload_builder_uses_the_registered_file(host: wasinn.WasiNnHost, tmp_path: Path) -> None:
    model = tmp_path / "echo.bin"
    model.write_bytes(make_model(3))
    host.register_model("default", model)
    g = TrampolineGuest(host, functions=ALL)
    graph = g.load([f"preload:{model}".encode()], encoding=6)  # GGML under the WasmEdge numbering
    assert graph.ok, graph.errno
    c = g.init_execution_context(graph.value).value  # type: ignore[arg-type]
    assert c is not None
    g.set_input(c, 0, np.frombuffer(b"abcdefg", np.uint8))
    assert stream(g, c)[0] == [b"abc", b"def", b"g"]
    # the graph is the host's shared one: the store holds no model bytes of its own
    assert g.state.tables.store_bytes == 0
    g.close()


@pytest.mark.parametrize("path", ["/etc/passwd", "", "../echo.bin", "\udcff"])
def test_preload_of_an_unregistered_path_is_refused(host: wasinn.WasiNnHost, tmp_path: Path, path: str,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    model = tmp_path / "echo.bin"
    model.write_bytes(make_model(3))
    host.register_model("default", model)
    g = TrampolineGuest(host, functions=ALL)
    raw = b"preload:" + path.encode("utf-8", "surrogateescape")
    assert g.load([raw], encoding=6).errno in (1, 103)
    assert "preload:" in caplog.text
    g.close()


def test_kit_streaming_check_passes_a_streaming_backend(host: wasinn.WasiNnHost) -> None:
    from wasinn.testing import check_streaming_hooks

    state = host.new_state()
    ctx = state.init_execution_context(state.load([make_model(3)], wasinn.GraphEncoding.AUTODETECT,
                                                  wasinn.ExecutionTarget.CPU))
    state.set_input(ctx, 0, wasinn.Tensor.from_numpy(np.frombuffer(b"abcdefgh", np.uint8)))
    check_streaming_hooks(state, ctx)


def test_kit_streaming_check_catches_a_partial_set(host: wasinn.WasiNnHost) -> None:
    from wasinn.testing import check_streaming_hooks
    from wasinn_test_backends import stream as module

    hooks = {name: getattr(module, name) for name in ("backend_info", "detect_format", "can_handle", "load",
                                                      "init_execution_context", "set_input", "compute",
                                                      "get_output", "compute_single")}
    only_compute = types.SimpleNamespace(**hooks)  # compute_single without get_output_single / fini_single

    with wasinn.WasiNnHost(backends={"partial": only_compute}, entry_points=False, allow=["partial"],
                           limits=wasinn.Limits(guest_models="in-process")) as partial:  # a namespace object
        state = partial.new_state()
        ctx = state.init_execution_context(state.load([make_model(3)], wasinn.GraphEncoding.AUTODETECT,
                                                      wasinn.ExecutionTarget.CPU))
        state.set_input(ctx, 0, wasinn.Tensor.from_numpy(np.frombuffer(b"abc", np.uint8)))
        with pytest.raises(AssertionError, match="implement all three streaming hooks or none"):
            check_streaming_hooks(state, ctx)


def test_component_tensors_honour_any_length() -> None:
    from wasinn.component.interface import new_tensor_entry

    with pytest.raises(wasinn.WasiNnError):
        new_tensor_entry([1], wasinn.TensorType.U8, b"hello")
    assert new_tensor_entry([1], wasinn.TensorType.U8, b"hello", any_length=True).data == b"hello"
    with pytest.raises(wasinn.WasiNnError):  # the rank and dimension bounds still hold
        new_tensor_entry([1 << 33], wasinn.TensorType.U8, b"hello", any_length=True)


def test_step_output_index_out_of_range_is_invalid_argument(wguest: TrampolineGuest,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    # get_output_single checks its index as get_output does: the model declares one output here.
    graph = wguest.load([make_model(2)])
    c = wguest.init_execution_context(graph.value).value  # type: ignore[arg-type]
    assert c is not None
    wguest.set_input(c, 0, np.frombuffer(b"hello", np.uint8))
    assert wguest.compute_single(c).ok
    assert wguest.get_output_bytes(c, 1)[0].errno == 1
    for index in (1, 7, 0xFFFFFFFF):
        assert wguest.get_output_single_bytes(c, index)[0].errno == 1
    assert "step output index 7 out of range" in caplog.text
    call, piece = wguest.get_output_single_bytes(c, 0)  # the context is still usable
    assert call.ok and piece == b"he"
