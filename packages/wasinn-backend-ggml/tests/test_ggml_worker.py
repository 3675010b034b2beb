"""A guest's GGUF in a confined worker (wasinn.worker, issue 28): llama.cpp maps the model from the
worker's memfd (no temporary file: the worker can write none), and the streaming hooks (one token
per compute_single) cross the worker with the same tokens as in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import WASMEDGE_FUNCTIONS
from test_ggml_backend import PROMPT, set_bytes, stream
from wasinn_backend_ggml.testing import write_tiny_llama

import wasinn
from wasinn import Limits
from wasinn.testing.guest import TrampolineGuest
from wasinn.worker import proxy

EOS = 100


def generate(model: bytes, policy: str) -> tuple[list[bytes], bytes, bool]:
    with wasinn.WasiNnHost(limits=Limits(guest_models=policy)) as host:
        guest = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        graph = guest.load([model], encoding="autodetect")
        assert graph.ok, graph
        isolated = isinstance(guest.state.graph(graph.value).graph.state, proxy.WorkerGraph)  # type: ignore[arg-type]
        ctx = guest.init_execution_context(graph.value).value  # type: ignore[arg-type]
        assert ctx is not None
        assert set_bytes(guest, ctx, 1, json.dumps({"temp": 0.0, "n-predict": 12, "ctx-size": 128}).encode()) == 0
        assert set_bytes(guest, ctx, 0, PROMPT) == 0
        pieces, errno = stream(guest, ctx)
        assert errno == EOS
        assert guest.call("fini_single", ctx) == 0
        assert set_bytes(guest, ctx, 0, PROMPT) == 0
        assert guest.compute(ctx).ok
        call, whole = guest.get_output_bytes(ctx, 0)
        assert call.ok
        guest.close()
        return pieces, whole, isolated


def test_tokens_stream_through_a_worker_as_in_process(tmp_path: Path) -> None:
    model = write_tiny_llama(tmp_path / "tiny.gguf").read_bytes()
    pieces, whole, isolated = generate(model, "isolate")
    same_pieces, same_whole, in_process = generate(model, "in-process")
    assert isolated and not in_process
    assert pieces and pieces == same_pieces and whole == same_whole


@pytest.mark.parametrize("ctx_size", [1 << 20, 1 << 30])
def test_a_huge_context_is_refused_in_the_worker(tmp_path: Path, ctx_size: int) -> None:
    model = write_tiny_llama(tmp_path / "tiny.gguf", metadata={"llama.context_length": (ctx_size, "u32")}).read_bytes()
    # Only the worker's memory cap stands between the guest and a huge KV cache here: never in-process.
    with wasinn.WasiNnHost(limits=Limits(guest_models="isolate", max_context_tokens=1 << 30,
                                         max_runtime_bytes_per_context=1 << 40, max_runtime_bytes_per_store=1 << 40,
                                         worker_memory_bytes=256 << 20)) as host:
        guest = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        graph = guest.load([model])
        errno = graph.errno
        if graph.ok:
            ctx = guest.init_execution_context(graph.value)  # type: ignore[arg-type]
            errno = ctx.errno
            if ctx.ok:
                # Past llama.cpp's own range the backend refuses the option; within it, the cap does.
                errno = set_bytes(guest, ctx.value, 1, json.dumps({"ctx-size": ctx_size}).encode()) or \
                    set_bytes(guest, ctx.value, 0, PROMPT) or guest.compute(ctx.value).errno  # type: ignore[arg-type]
        assert errno in ((7, 5) if ctx_size <= 1 << 20 else (1, 7, 5)), \
            "the KV cache of a huge context cannot fit the worker's cap"
        assert guest.load([write_tiny_llama(tmp_path / "ok.gguf").read_bytes()]).ok, "the host goes on"
        guest.close()
