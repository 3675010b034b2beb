"""Hostile guest input to the GGML conventions: metadata values JSON allows but no option can take,
and what the docs' options table promises. Each failure is the right wasi-nn error with a log line,
and the context still works afterwards."""

from __future__ import annotations

import gc
import io
import json
import logging
import math
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import WASMEDGE_FUNCTIONS
from ggml_native import Native
from test_ggml_backend import GREEDY, PROMPT, PROMPT_TOO_LONG, open_context, set_bytes, stream
from wasinn_backend_ggml.testing import TinyLlama, vocabulary, write_tiny_llama

import wasinn
from wasinn.testing.guest import TrampolineGuest

INVALID_ARGUMENT = 1


@pytest.mark.parametrize("raw", [
    b'{"n-predict": NaN}', b'{"n-predict": Infinity}', b'{"n-predict": 1e400}', b'{"seed": -Infinity}',
    b'{"temp": Infinity}', b'{"temp": -Infinity}', b'{"temp": NaN}', b'{"top-p": Infinity}',
    b'{"repeat-penalty": -Infinity}', b'{"presence-penalty": Infinity}',
    b'{"temp": 1' + b"0" * 400 + b"}",  # an integer no float holds
    b'{"ctx-size": 1' + b"0" * 400 + b"}",
    b'{"reverse-prompt": "\\ud800"}',  # a lone surrogate: JSON allows it, UTF-8 cannot encode it
])
def test_unusable_metadata_values_are_invalid_argument(guest: TrampolineGuest, native: Native, raw: bytes,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    ctx = open_context(guest, GREEDY)
    assert set_bytes(guest, ctx, 1, raw) == INVALID_ARGUMENT
    assert "invalid_argument" in caplog.text and "option " in caplog.text
    # the refused metadata changed nothing: the context generates as before
    assert set_bytes(guest, ctx, 0, PROMPT) == 0
    assert guest.compute(ctx).ok
    assert guest.get_output_bytes(ctx, 0)[1] == native.generate(PROMPT, 16).text


def test_unusable_load_config_is_invalid_argument(guest: TrampolineGuest) -> None:
    for config in ('{"n-predict": NaN}', '{"temp": Infinity}', '{"reverse-prompt": "\\udfff"}'):
        assert guest.load_by_name("default", config).errno == INVALID_ARGUMENT


def test_enable_debug_log_logs_timings(guest: TrampolineGuest, caplog: pytest.LogCaptureFixture) -> None:
    # The options table: enable-log and enable-debug-log both log prompt and generation timings.
    caplog.set_level(logging.INFO, "wasinn.ggml")
    ctx = open_context(guest, {**GREEDY, "enable-debug-log": True})
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    assert "prompt of" in caplog.text and "tokens generated in" in caplog.text
    caplog.clear()
    assert set_bytes(guest, ctx, 1, json.dumps({"enable-debug-log": False}).encode()) == 0
    assert guest.compute(ctx).ok
    assert "tokens generated in" not in caplog.text


def test_step_output_index_out_of_range(guest: TrampolineGuest, native: Native) -> None:
    # get_output_single checks its index as get_output does (two outputs: text, metadata).
    ctx = open_context(guest, GREEDY)
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute_single(ctx).ok
    for index in (2, 99):
        assert guest.get_output_bytes(ctx, index)[0].errno == INVALID_ARGUMENT
        assert guest.get_output_single_bytes(ctx, index)[0].errno == INVALID_ARGUMENT
    call, piece = guest.get_output_single_bytes(ctx, 0)
    assert call.ok and piece == native.generate(PROMPT, 16).pieces[0]


class TextOnly(io.StringIO):
    """An embedder's stdout that takes text only (no byte buffer), as io.StringIO does."""


@pytest.mark.parametrize("stdout", ["text", "none", "closed"])
def test_stream_stdout_on_an_embedders_stdout(guest: TrampolineGuest, native: Native, stdout: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    # The generation never fails because of where the host's stdout goes.
    expected = native.generate(PROMPT, 16).text
    target: io.StringIO | None = TextOnly() if stdout != "none" else None
    if stdout == "closed":
        assert target is not None
        target.close()
    monkeypatch.setattr(sys, "stdout", target)
    ctx = open_context(guest, {**GREEDY, "stream-stdout": True})
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    assert guest.get_output_bytes(ctx, 0)[1] == expected
    if stdout == "text":
        assert target is not None
        assert target.getvalue() == expected.decode("utf-8", "replace")  # characters split across tokens joined
    else:
        assert caplog.text.count("cannot write to the host's stdout") == 1  # once per generation


def test_many_unknown_keys_are_one_log_line(guest: TrampolineGuest, caplog: pytest.LogCaptureFixture) -> None:
    # Unknown keys are logged, not fatal; a guest sending thousands (or a huge one) must not flood the log.
    ctx = open_context(guest, GREEDY)
    keys = {f"key-{i}": i for i in range(5000)} | {"k" * 100_000: 1}
    caplog.clear()  # the load's own lines
    assert set_bytes(guest, ctx, 1, json.dumps(keys).encode()) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "wasinn.ggml"]
    assert len(lines) == 1 and "'key-0'" in lines[0] and "4993 more" in lines[0] and len(lines[0]) < 1000
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok


@pytest.fixture
def live_contexts(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the llama_contexts alive (native memory: a KV cache each), through llama.cpp's own calls."""
    from llama_cpp import llama_cpp as lib

    count = {"live": 0}
    lock = threading.Lock()
    init, free = lib.llama_init_from_model, lib.llama_free

    def counted_init(*args: Any) -> Any:
        ctx = init(*args)
        if ctx:
            with lock:
                count["live"] += 1
        return ctx

    def counted_free(ctx: Any) -> None:
        with lock:
            count["live"] -= 1
        free(ctx)

    monkeypatch.setattr(lib, "llama_init_from_model", counted_init)
    monkeypatch.setattr(lib, "llama_free", counted_free)
    return count


def test_llama_contexts_are_freed(host: wasinn.WasiNnHost, live_contexts: dict[str, int]) -> None:
    for round_ in range(3):
        guest = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        contexts = [open_context(guest, GREEDY) for _ in range(8)]
        for ctx in contexts:
            set_bytes(guest, ctx, 0, PROMPT)
            assert guest.compute_single(ctx).ok  # a stream left open
        assert live_contexts["live"] == 8
        for ctx in contexts[:4]:
            assert guest.finalize_execution_context(ctx).ok
        assert live_contexts["live"] == 4
        if round_ == 0:
            guest.close()  # the store's contexts go with it
        else:
            del guest  # or with the store, never closed
        gc.collect()
        assert live_contexts["live"] == 0
    # options that re-create a context's llama_context free the old one
    guest = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
    ctx = open_context(guest, GREEDY)
    set_bytes(guest, ctx, 0, PROMPT)
    for size in (64, 96, 128, 160):
        assert set_bytes(guest, ctx, 1, json.dumps({"ctx-size": size}).encode()) == 0
        assert guest.compute(ctx).ok
        assert live_contexts["live"] == 1
    guest.close()
    assert live_contexts["live"] == 0


def test_threads_on_contexts_of_one_graph(host: wasinn.WasiNnHost, native: Native) -> None:
    # The named model's graph is shared by every store, and its contexts run concurrently (no lock).
    expected = native.generate(PROMPT, 16).pieces
    results: dict[int, list[bool]] = {}

    def worker(k: int) -> None:
        guest = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        results[k] = []
        for _ in range(8):
            ctx = open_context(guest, GREEDY)
            set_bytes(guest, ctx, 0, PROMPT)
            pieces, errno = stream(guest, ctx)
            results[k].append(pieces == expected and errno == 100)
            guest.finalize_execution_context(ctx)
        guest.close()

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == {k: [True] * 8 for k in range(3)}


def test_finalize_and_unload_with_a_stream_open(guest: TrampolineGuest, native: Native) -> None:
    expected = native.generate(PROMPT, 16).pieces
    graph = guest.load([f"preload:{native.path}".encode()], encoding=6, target=3).value
    assert graph is not None
    ctx = guest.init_execution_context(graph).value
    assert ctx is not None
    set_bytes(guest, ctx, 1, json.dumps(GREEDY).encode())
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute_single(ctx).ok
    assert guest.unload(graph).ok  # the open stream keeps the model
    assert stream(guest, ctx) == (expected[1:], 100)
    assert guest.finalize_execution_context(ctx).ok
    assert guest.compute_single(ctx).errno == INVALID_ARGUMENT  # the handle is gone
    assert guest.get_output_single_bytes(ctx, 0)[0].errno == INVALID_ARGUMENT
    fresh = open_context(guest, GREEDY)  # and a fresh context works
    set_bytes(guest, fresh, 0, PROMPT)
    assert stream(guest, fresh) == (expected, 100)


def test_model_options_that_cannot_apply_are_logged(guest: TrampolineGuest, native: Native,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    # The options table lists tensor-split and main-gpu as read at load: never ignored silently.
    ctx = open_context(guest, {**GREEDY, "tensor-split": "3,1", "main-gpu": 1})
    assert "tensor-split '3,1' ignored" in caplog.text
    assert "main-gpu=1 ignored: this llama.cpp build has no GPU offload" in caplog.text
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    assert guest.get_output_bytes(ctx, 0)[1] == native.generate(PROMPT, 16).text


def test_a_prompt_no_context_can_hold_is_not_tokenized(guest: TrampolineGuest, native: Native,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # Tokenizing takes ~45 bytes of host memory per prompt byte: a guest's 1 GiB prompt (within the
    # tensor limit) would take the host down. Past what any context of the model can hold, it is
    # refused untokenized, PromptTooLong; a prompt under the bound is tokenized as before.
    import llama_cpp

    tokenized: list[int] = []
    tokenize = llama_cpp.llama_tokenize

    def spy(vocab: Any, text: bytes, *args: Any) -> int:
        tokenized.append(len(text))
        return tokenize(vocab, text, *args)

    monkeypatch.setattr(llama_cpp, "llama_tokenize", spy)
    ctx = open_context(guest, GREEDY)
    bound = guest.state.context(ctx).context.state.graph.max_prompt_bytes
    longest = max(len(t.encode()) for t in vocabulary()[0])
    assert bound == (4096 + 256) * longest  # the tiny model trained on 256 tokens: the 4096 floor
    huge = b"the " * (bound // 4 + 1)
    assert set_bytes(guest, ctx, 0, huge) == 0
    assert tokenized == []
    assert guest.compute(ctx).errno == PROMPT_TOO_LONG
    assert guest.compute_single(ctx).errno == PROMPT_TOO_LONG
    assert json.loads(guest.get_output_bytes(ctx, 1)[1])["input_tokens"] == 0
    near = b"a" * (bound - 1)  # could still fit by the bound's reckoning: tokenized, then counted
    assert set_bytes(guest, ctx, 0, near) == 0 and tokenized == [len(near)]
    assert guest.compute(ctx).errno == PROMPT_TOO_LONG
    assert set_bytes(guest, ctx, 0, PROMPT) == 0  # the context still works
    assert guest.compute(ctx).ok
    assert guest.get_output_bytes(ctx, 0)[1] == native.generate(PROMPT, 16).text


def test_metadata_is_bounded_as_a_load_config_is(guest: TrampolineGuest, caplog: pytest.LogCaptureFixture) -> None:
    ctx = open_context(guest, GREEDY)
    big = json.dumps({"reverse-prompt": "x" * (1 << 20)}).encode()
    assert set_bytes(guest, ctx, 1, big) == INVALID_ARGUMENT
    assert "is too long" in caplog.text
    assert guest.load_by_name("default", big.decode()).errno == INVALID_ARGUMENT  # the same bound
    ok = json.dumps({"reverse-prompt": "x" * 1000}).encode()
    assert set_bytes(guest, ctx, 1, ok) == 0
    assert guest.state.context(ctx).context.state.options.reverse_prompt == "x" * 1000


def test_calls_in_the_wrong_order(guest: TrampolineGuest, native: Native) -> None:
    expected = native.generate(PROMPT, 16)
    ctx = open_context(guest, GREEDY)
    call, piece = guest.get_output_single_bytes(ctx, 0)
    assert call.ok and piece == b""  # no step yet: no bytes, as in WasmEdge
    assert guest.compute_single(ctx).errno == INVALID_ARGUMENT  # no prompt
    assert guest.fini_single(ctx).ok  # no stream: nothing to end
    assert set_bytes(guest, ctx, 0, b"") == 0 and guest.compute(ctx).errno == INVALID_ARGUMENT  # empty prompt
    set_bytes(guest, ctx, 0, PROMPT)
    assert stream(guest, ctx) == (expected.pieces, 100)
    assert guest.compute_single(ctx).errno == 100  # still ended, until fini_single or a new prompt
    assert guest.compute(ctx).ok  # compute after the end: the whole generation again
    assert guest.get_output_bytes(ctx, 0)[1] == expected.text
    assert guest.compute_single(ctx).ok  # compute_single after compute: a new stream
    assert set_bytes(guest, ctx, 0, PROMPT) == 0  # a new prompt mid-stream starts over
    assert guest.get_output_single_bytes(ctx, 0)[1] == b""
    assert stream(guest, ctx) == (expected.pieces, 100)
    assert guest.finalize_execution_context(ctx).ok
    for call in (guest.compute_single, guest.fini_single, guest.compute):
        assert call(ctx).errno == INVALID_ARGUMENT  # after finalize: an unknown handle


def _strict(constant: str) -> None:
    raise ValueError(f"{constant} is not JSON")


def test_an_overflowing_model_still_gives_json(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # Huge weights: llama.cpp's arithmetic overflows and the embedding is NaN (natively too). The
    # output must stay JSON that strict parsers read (null, as WasmEdge writes), with a log line.
    path = write_tiny_llama(tmp_path / "overflow.gguf", TinyLlama(weight_scale=1e12))
    native = Native(path).raw_embedding("hello world")
    broken = [i for i, v in enumerate(native) if not math.isfinite(v)]
    assert broken  # the model really overflows
    with wasinn.WasiNnHost() as host:
        host.register_model("default", path)
        guest = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        # not normalised (embd-normalize -1): a NaN makes llama.cpp's L2 norm NaN, and every value 0 or NaN
        ctx = open_context(guest, {"embedding": True, "ctx-size": 128, "embd-normalize": -1})
        set_bytes(guest, ctx, 0, b"hello world")
        assert guest.compute(ctx).ok
        output = json.loads(guest.get_output_bytes(ctx, 0)[1], parse_constant=_strict)
        assert [i for i, v in enumerate(output["embedding"]) if v is None] == broken
        assert [np.float32(v) for v in output["embedding"] if v is not None] == \
            [np.float32(v) for v in native if math.isfinite(v)]
        assert f"holds {len(broken)} values that are not finite" in caplog.text
        guest.close()
