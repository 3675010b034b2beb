"""WasmEdge's GGML conventions through a real wasm guest (the trampoline), each compared with
llama-cpp-python called natively with the same options."""

from __future__ import annotations

import json
import logging
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import WASMEDGE_FUNCTIONS
from ggml_native import Native
from wasinn_backend_ggml.testing import TinyLlama, write_tiny_llama

import wasinn
from wasinn.testing.guest import TrampolineGuest

U8 = 3
PROMPT = b"hello world, the llama said"
EOS, CONTEXT_FULL, PROMPT_TOO_LONG, MODEL_NOT_FOUND = 100, 101, 102, 103


def open_context(guest: TrampolineGuest, config: dict[str, Any] | None = None, name: str = "default") -> int:
    graph = guest.load_by_name(name, json.dumps(config) if config is not None else None)
    assert graph.ok, graph.errno
    ctx = guest.init_execution_context(graph.value)  # type: ignore[arg-type]
    assert ctx.ok and ctx.value is not None
    return ctx.value


def set_bytes(guest: TrampolineGuest, ctx: int, index: int, data: bytes) -> int:
    # WasmEdge guests send N bytes of u8 with dims [1].
    return guest.call("set_input", ctx, index, guest.tensor_record(data, [1], U8))


def stream(guest: TrampolineGuest, ctx: int, limit: int = 1000) -> tuple[list[bytes], int]:
    pieces = []
    for _ in range(limit):
        errno = guest.compute_single(ctx).errno
        if errno:
            return pieces, errno
        call, piece = guest.get_output_single_bytes(ctx, 0)
        assert call.ok
        pieces.append(piece)
    raise AssertionError("no end of sequence")


def metadata(guest: TrampolineGuest, ctx: int, single: bool = False) -> dict[str, Any]:
    call, raw = guest.get_output_single_bytes(ctx, 1) if single else guest.get_output_bytes(ctx, 1)
    assert call.ok
    value: dict[str, Any] = json.loads(raw)
    return value


GREEDY = {"temp": 0.0, "ctx-size": 128, "n-predict": 16}


def test_compute_is_the_whole_generation(guest: TrampolineGuest, native: Native) -> None:
    ctx = open_context(guest, GREEDY)
    assert set_bytes(guest, ctx, 0, PROMPT) == 0
    expected = native.generate(PROMPT, 16)
    # as in WasmEdge, the prompt is tokenized at set_input: guests read input_tokens before compute
    assert metadata(guest, ctx)["input_tokens"] == expected.input_tokens
    assert guest.compute(ctx).ok
    assert len(expected.tokens) == 16
    assert guest.get_output_bytes(ctx, 0)[1] == expected.text
    info = metadata(guest, ctx)
    assert info["input_tokens"] == expected.input_tokens and info["output_tokens"] == 16
    assert set(info) == {"input_tokens", "output_tokens", "llama_build_number", "llama_commit", "llama_cpp_python"}


def test_sampling_matches_native_with_the_same_seed(guest: TrampolineGuest, native: Native) -> None:
    options = {"temp": 0.9, "top-p": 0.9, "seed": 1234, "ctx-size": 128, "n-predict": 24, "repeat-penalty": 1.1}
    ctx = open_context(guest, options)
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    expected = native.generate(PROMPT, 24, temp=0.9, top_p=0.9, seed=1234, repeat_penalty=1.1)
    assert guest.get_output_bytes(ctx, 0)[1] == expected.text
    greedy = native.generate(PROMPT, 24, repeat_penalty=1.1)
    assert expected.tokens != greedy.tokens  # the sampler really sampled


def test_streaming_token_by_token(guest: TrampolineGuest, native: Native) -> None:
    ctx = open_context(guest, GREEDY)
    set_bytes(guest, ctx, 0, PROMPT)
    pieces, errno = stream(guest, ctx)
    assert errno == EOS  # n-predict reached: EndOfSequence (WasmEdge numbering)
    assert pieces == native.generate(PROMPT, 16).pieces
    assert metadata(guest, ctx, single=True)["output_tokens"] == 16
    # the stream stays ended until fini_single; then the same prompt streams again
    assert guest.compute_single(ctx).errno == EOS
    assert guest.fini_single(ctx).ok
    assert stream(guest, ctx)[0] == pieces


def test_end_of_sequence_token_ends_the_answer(tmp_path: Path, native: Native) -> None:
    first = native.generate(PROMPT, 8)
    eos = first.tokens[3]
    assert eos not in first.tokens[:3]  # the fixed seed's 4th token is new: the answer ends right there
    model = write_tiny_llama(tmp_path / "eos.gguf", TinyLlama(eos_id=eos))
    with wasinn.WasiNnHost() as host:
        host.register_model("eos", model)
        g = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        ctx = open_context(g, {"temp": 0.0, "ctx-size": 128}, name="eos")
        set_bytes(g, ctx, 0, PROMPT)
        pieces, errno = stream(g, ctx)
        assert errno == EOS and pieces == first.pieces[:3]
        assert g.compute(ctx).ok
        assert g.get_output_bytes(ctx, 0)[1] == b"".join(first.pieces[:3])
        g.close()


def test_context_full(guest: TrampolineGuest, native: Native) -> None:
    prompt = native.filling(PROMPT, 40, room=24)
    ctx = open_context(guest, {"temp": 0.0, "ctx-size": 40})
    set_bytes(guest, ctx, 0, prompt)
    expected = native.generate(prompt, 1000, ctx_size=native.n_ctx(40))
    assert guest.compute(ctx).errno == CONTEXT_FULL
    # as in WasmEdge, the text generated until the context filled is still output 0
    assert guest.get_output_bytes(ctx, 0)[1] == expected.text
    assert len(expected.tokens) == expected.n_ctx - expected.input_tokens + 1
    pieces, errno = stream(guest, ctx)
    assert errno == CONTEXT_FULL and pieces == expected.pieces


def test_prompt_too_long(guest: TrampolineGuest, native: Native, caplog: pytest.LogCaptureFixture) -> None:
    ctx = open_context(guest, {"ctx-size": 8})  # llama.cpp rounds that up (32, or 256): still too few
    set_bytes(guest, ctx, 0, native.filling(PROMPT, 8, room=-10))
    assert guest.compute(ctx).errno == PROMPT_TOO_LONG
    assert guest.compute_single(ctx).errno == PROMPT_TOO_LONG
    assert f"the context holds {native.n_ctx(8)}" in caplog.text


def test_metadata_updates_options_mid_session(guest: TrampolineGuest, native: Native) -> None:
    prompt = native.filling(PROMPT, 40, room=24)
    ctx = open_context(guest, GREEDY)
    set_bytes(guest, ctx, 0, prompt)
    assert set_bytes(guest, ctx, 1, json.dumps({"n-predict": 3}).encode()) == 0
    assert guest.compute(ctx).ok
    assert guest.get_output_bytes(ctx, 0)[1] == native.generate(prompt, 3, ctx_size=native.n_ctx(128)).text
    # a context-level change (ctx-size) re-creates the llama context
    set_bytes(guest, ctx, 1, json.dumps({"ctx-size": 40, "n-predict": -1}).encode())
    assert guest.compute(ctx).errno == CONTEXT_FULL
    assert guest.get_output_bytes(ctx, 0)[1] == native.generate(prompt, 1000, ctx_size=native.n_ctx(40)).text


def test_set_input_twice_replaces_the_prompt(guest: TrampolineGuest, native: Native) -> None:
    ctx = open_context(guest, GREEDY)
    set_bytes(guest, ctx, 0, b"something else entirely")
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    assert guest.get_output_bytes(ctx, 0)[1] == native.generate(PROMPT, 16).text
    # a new prompt mid-stream ends that stream and starts the new one
    set_bytes(guest, ctx, 0, b"the cat")
    assert guest.compute_single(ctx).ok
    set_bytes(guest, ctx, 0, PROMPT)
    assert stream(guest, ctx)[0] == native.generate(PROMPT, 16).pieces


def test_several_contexts_of_one_graph(guest: TrampolineGuest, native: Native) -> None:
    graph = guest.load_by_name("default", json.dumps(GREEDY)).value
    assert graph is not None
    a = guest.init_execution_context(graph).value
    b = guest.init_execution_context(graph).value
    assert a is not None and b is not None
    set_bytes(guest, a, 0, PROMPT)
    set_bytes(guest, b, 0, b"the dog and the cat")
    got: dict[int, list[bytes]] = {a: [], b: []}
    for _ in range(16):  # interleaved: each context keeps its own KV cache
        for ctx in (a, b):
            assert guest.compute_single(ctx).ok
            got[ctx].append(guest.get_output_single_bytes(ctx, 0)[1])
    assert got[a] == native.generate(PROMPT, 16).pieces
    assert got[b] == native.generate(b"the dog and the cat", 16).pieces
    # both contexts use the graph's one llama_model
    states = [guest.state.context(h).context.state for h in (a, b)]
    assert states[0].graph is states[1].graph and states[0].llama_ctx is not states[1].llama_ctx


def test_embedding(guest: TrampolineGuest, native: Native) -> None:
    ctx = open_context(guest, {"embedding": True, "ctx-size": 128})
    set_bytes(guest, ctx, 0, b"hello world")
    assert guest.compute(ctx).ok
    output = json.loads(guest.get_output_bytes(ctx, 0)[1])
    assert output["n_embedding"] == 64
    # WasmEdge's: the model declares no pooling, so the last token's vector, L2-normalised
    assert np.array_equal(np.float32(output["embedding"]), np.float32(native.embed("hello world")))
    assert math.isclose(float(np.linalg.norm(output["embedding"])), 1.0, rel_tol=1e-6)
    # and it is llama-cpp-python's own normalisation of its own vector
    reference = native.llama(ctx_size=128, embedding=True).embed("hello world", normalize=True)[-1]
    assert np.allclose(output["embedding"], reference, rtol=0, atol=1e-6)
    assert guest.compute_single(ctx).errno == 6  # embeddings do not stream


def test_unknown_keys_are_logged_not_fatal(guest: TrampolineGuest, caplog: pytest.LogCaptureFixture) -> None:
    ctx = open_context(guest, {**GREEDY, "no-such-key": 1, "n-parallel": 4})
    set_bytes(guest, ctx, 0, PROMPT)
    assert set_bytes(guest, ctx, 1, b'{"another-new-key": true}') == 0
    assert guest.compute(ctx).ok
    assert "unknown option 'no-such-key'" in caplog.text and "another-new-key" in caplog.text
    assert "n-parallel: one sequence per wasi-nn context" in caplog.text


@pytest.mark.parametrize("raw", [b'{"temp": "hot"}', b'{"n-predict": 1.5}', b'{"embedding": 1}', b"not json",
                                 b"[1, 2]", b'{"ctx-size": -5}'])
def test_bad_metadata_is_invalid_argument(guest: TrampolineGuest, raw: bytes) -> None:
    ctx = open_context(guest, GREEDY)
    assert set_bytes(guest, ctx, 1, raw) == 1


def test_bad_load_config_is_invalid_argument(guest: TrampolineGuest) -> None:
    assert guest.load_by_name("default", '{"ctx-size": "big"}').errno == 1


def test_no_prompt_is_invalid_argument(guest: TrampolineGuest) -> None:
    ctx = open_context(guest, GREEDY)
    assert guest.compute(ctx).errno == 1


def test_unknown_model_is_model_not_found(guest: TrampolineGuest) -> None:
    assert guest.load_by_name("nope").errno == MODEL_NOT_FOUND


def test_n_gpu_layers_on_a_cpu_build_says_it_runs_on_the_cpu(guest: TrampolineGuest, native: Native,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ctx = open_context(guest, {**GREEDY, "n-gpu-layers": 100})
    assert "no GPU offload: the whole model runs on the CPU" in caplog.text
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    assert guest.get_output_bytes(ctx, 0)[1] == native.generate(PROMPT, 16).text


def test_target_gpu_is_refused(tiny: Path) -> None:
    with wasinn.WasiNnHost() as host:
        g = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        call = g.load([tiny.read_bytes()], encoding=6, target=1)  # GGML, GPU (WasmEdge numbering)
        assert call.errno == 6  # unsupported_operation
        g.close()


def test_guest_bytes_load_is_validated_probed_and_works(tiny: Path, native: Native) -> None:
    with wasinn.WasiNnHost() as host:
        g = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        graph = g.load([tiny.read_bytes()], encoding=6, target=3)  # GGML, AUTO
        assert graph.ok, graph.errno
        ctx = g.init_execution_context(graph.value).value  # type: ignore[arg-type]
        assert ctx is not None
        set_bytes(g, ctx, 0, PROMPT)
        set_bytes(g, ctx, 1, json.dumps(GREEDY).encode())
        assert g.compute(ctx).ok
        assert g.get_output_bytes(ctx, 0)[1] == native.generate(PROMPT, 16).text
        g.close()


def test_preload_builder_maps_the_registered_file(guest: TrampolineGuest, tiny: Path, native: Native) -> None:
    graph = guest.load([f"preload:{tiny}".encode()], encoding=6, target=3)
    assert graph.ok, graph.errno
    assert guest.state.tables.store_bytes == 0  # nothing was copied through the guest
    ctx = guest.init_execution_context(graph.value).value  # type: ignore[arg-type]
    assert ctx is not None
    set_bytes(guest, ctx, 0, PROMPT)
    set_bytes(guest, ctx, 1, json.dumps(GREEDY).encode())
    assert stream(guest, ctx)[0] == native.generate(PROMPT, 16).pieces
    assert guest.load([b"preload:/etc/hostname"], encoding=6).errno == MODEL_NOT_FOUND


def test_unload_while_a_context_lives(guest: TrampolineGuest, native: Native) -> None:
    graph = guest.load_by_name("default", json.dumps({**GREEDY, "n-predict": 4})).value
    assert graph is not None
    ctx = guest.init_execution_context(graph).value
    assert ctx is not None
    assert guest.unload(graph).ok
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok  # the context keeps the model alive
    assert guest.get_output_bytes(ctx, 0)[1] == native.generate(PROMPT, 4).text
    assert guest.finalize_execution_context(ctx).ok


def test_explain_picks_ggml(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from wasinn.cli.main import main

    assert main(["explain", str(tiny)]) == 0
    out = capsys.readouterr().out
    assert "ggml" in out and "GGUF" in out


def test_the_conformance_kits_streaming_contract(guest: TrampolineGuest) -> None:
    # The kit's add-one models are no language model: its streaming check runs on our own context.
    from wasinn.testing import check_streaming_hooks

    for options in (GREEDY, {"temp": 0.0, "ctx-size": 40}):  # ends by n-predict, then by a full context
        ctx = open_context(guest, options)
        set_bytes(guest, ctx, 0, PROMPT)
        check_streaming_hooks(guest.state, ctx)


def test_guest_chosen_sizes_are_bounded(guest: TrampolineGuest, caplog: pytest.LogCaptureFixture) -> None:
    # A guest cannot make the host allocate a million-token KV cache or start a thousand threads.
    ctx = open_context(guest, {**GREEDY, "ctx-size": 1 << 20, "threads": 1000, "batch-size": 60000})
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    state = guest.state.context(ctx).context.state
    assert state.llama_ctx.n_ctx() == 4096  # the tiny model trained on 256: the floor of the cap
    assert state.n_batch == 4096
    assert "ctx-size 1048576 is more than" in caplog.text and "threads 1000 is more than" in caplog.text


def test_reverse_prompt_ends_the_answer_after_it(guest: TrampolineGuest, native: Native) -> None:
    expected = native.generate(PROMPT, 16)
    # a word piece the model generates (the random model's other pieces are mostly raw bytes)
    stop = next(p for p in expected.pieces[1:] if p.strip() and p.isascii() and p.decode().isprintable())
    text, n = b"", 0
    for piece in expected.pieces:  # where the answer must end: the first time it ends with `stop`
        text, n = text + piece, n + 1
        if text.endswith(stop):
            break
    assert n < len(expected.pieces)
    ctx = open_context(guest, {**GREEDY, "reverse-prompt": stop.decode()})
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    assert guest.get_output_bytes(ctx, 0)[1] == text
    assert stream(guest, ctx) == (expected.pieces[:n], 100)  # streaming ends there too: EndOfSequence


def test_stream_stdout_and_enable_log(guest: TrampolineGuest, native: Native, capfdbinary: pytest.CaptureFixture[bytes],
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    ctx = open_context(guest, {**GREEDY, "stream-stdout": True, "enable-log": True})
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    assert capfdbinary.readouterr().out == native.generate(PROMPT, 16).text
    assert "16 tokens generated in" in caplog.text and "prompt of" in caplog.text


@pytest.mark.parametrize(("abi", "encoding", "eos"), [("wasmedge", 6, 100), ("wamr", 5, 100), ("witx", 5, 5)])
def test_ggml_encoding_and_codes_in_each_numbering(tiny: Path, native: Native, abi: str, encoding: int,
                                                   eos: int) -> None:
    # GGML is 6 for WasmEdge, 5 for WAMR (WIT order); witx has no ggml: 5 is autodetect, which finds GGUF.
    with wasinn.WasiNnHost() as host:
        g = TrampolineGuest(host, abi=abi, functions=WASMEDGE_FUNCTIONS)
        graph = g.load([tiny.read_bytes()], encoding=encoding)
        assert graph.ok, graph.errno
        ctx = g.init_execution_context(graph.value).value  # type: ignore[arg-type]
        assert ctx is not None
        set_bytes(g, ctx, 1, json.dumps({**GREEDY, "n-predict": 4}).encode())
        set_bytes(g, ctx, 0, PROMPT)
        assert stream(g, ctx) == (native.generate(PROMPT, 4).pieces, eos)
        g.close()


EXIT_CHILD = r"""
import atexit, sys
import llama_cpp
from wasinn_backend_ggml import backend
calls = []
backend.GgmlBackend._on_llama_log = staticmethod(lambda *args: calls.append(args[0]))
ggml = backend.GgmlBackend()  # installs the log callback
atexit._run_exitfuncs()  # what the interpreter does before it tears itself down
llama_cpp.Llama(sys.argv[1], verbose=False, n_ctx=128)  # llama.cpp logs while it loads and frees
print(len(calls))
"""


def test_at_exit_llama_cpp_logs_without_python(tiny: Path) -> None:
    # A Llama freed while the interpreter shuts down called the backend's Python log callback from a
    # dying interpreter: SIGSEGV at exit (seen with llama-cpp-python 0.3.36 under pytest). At exit the
    # backend gives llama.cpp its own C logger back, so no Python runs from llama.cpp after that.
    done = subprocess.run([sys.executable, "-c", EXIT_CHILD, str(tiny)], capture_output=True, text=True,
                          timeout=120, check=False, env={**os.environ, "WASINN_BACKENDS": "ggml"})
    assert done.returncode == 0, (done.returncode, done.stderr[-1500:])
    assert done.stdout.split()[-1] == "0", "llama.cpp still called the Python callback after atexit"
