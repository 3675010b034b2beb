"""End to end: our C guest written to WasmEdge's GGML conventions (guests/llm-chat) run by
``wasinn run --nn-preload default:GGML:AUTO:tiny.gguf``, its stdout compared byte for byte with
llama-cpp-python called natively with the same options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ggml_native import Native

GUEST = Path(__file__).resolve().parents[3] / "guests" / "llm-chat" / "llm-chat.wasm"
GREEDY = {"temp": 0.0, "ctx-size": 128, "n-predict": 16}
PROMPT = "hello world, the llama said"


def wasinn_run(model: Path, *guest_args: str, flag: str = "--nn-preload") -> subprocess.CompletedProcess[bytes]:
    spec = f"default:GGML:AUTO:{model}" if flag == "--nn-preload" else f"default={model}"
    env = {**os.environ, "WASINN_BACKENDS": "ggml"}
    return subprocess.run([sys.executable, "-m", "wasinn", "run", flag, spec, str(GUEST), *guest_args],
                          capture_output=True, timeout=300, check=False, env=env)


def metadata_lines(stderr: bytes) -> list[dict[str, int]]:
    return [json.loads(line.split(b"metadata: ", 1)[1]) for line in stderr.splitlines() if b"metadata: " in line]


def test_chat_two_turns_on_one_context(tiny: Path, native: Native) -> None:
    run = wasinn_run(tiny, "--config", json.dumps(GREEDY), "--prompt", PROMPT, "--prompt", "the cat")
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    first, second = native.generate(PROMPT.encode(), 16), native.generate(b"the cat", 16)
    assert run.stdout == first.text + second.text
    assert [m["output_tokens"] for m in metadata_lines(run.stderr)] == [16, 16]
    assert [m["input_tokens"] for m in metadata_lines(run.stderr)] == [first.input_tokens, second.input_tokens]
    assert b"target auto: llama.cpp on the CPU" in run.stderr  # says plainly where AUTO runs


@pytest.mark.parametrize("flag", ["--nn-preload", "--nn-graph"])
def test_stream(tiny: Path, native: Native, flag: str) -> None:
    run = wasinn_run(tiny, "--mode", "stream", "--config", json.dumps(GREEDY), "--prompt", PROMPT, flag=flag)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert run.stdout == native.generate(PROMPT.encode(), 16).text


def test_stream_with_sampling_and_metadata_options(tiny: Path, native: Native) -> None:
    options = {"temp": 0.7, "top-p": 0.9, "seed": 7, "repeat-penalty": 1.2, "n-predict": 20, "ctx-size": 128}
    run = wasinn_run(tiny, "--mode", "stream", "--metadata", json.dumps(options), "--prompt", PROMPT)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert run.stdout == native.generate(PROMPT.encode(), 20, temp=0.7, top_p=0.9, seed=7, repeat_penalty=1.2).text


def test_embed(tiny: Path, native: Native) -> None:
    run = wasinn_run(tiny, "--mode", "embed", "--config", json.dumps({"embedding": True, "ctx-size": 128}),
                     "--prompt", "hello world")
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    output = json.loads(run.stdout)
    assert output["n_embedding"] == 64
    assert [np.float32(v) for v in output["embedding"]] == [np.float32(v) for v in native.embed("hello world")]


def test_preload_builder(tiny: Path, native: Native) -> None:
    run = wasinn_run(tiny, "--preload", str(tiny), "--metadata", json.dumps(GREEDY), "--mode", "stream",
                     "--prompt", PROMPT)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert run.stdout == native.generate(PROMPT.encode(), 16).text


def test_context_full_keeps_the_text(tiny: Path, native: Native) -> None:
    config = json.dumps({"temp": 0.0, "ctx-size": 40})
    prompt = native.filling(PROMPT.encode(), 40, room=24)
    expected = native.generate(prompt, 1000, ctx_size=native.n_ctx(40)).text
    for mode in ("chat", "stream"):
        run = wasinn_run(tiny, "--mode", mode, "--config", config, "--prompt", prompt.decode())
        assert run.returncode == 0, run.stderr.decode(errors="replace")
        assert b"context full" in run.stderr
        assert run.stdout == expected


@pytest.mark.parametrize("flag", ["--nn-graph", "--nn-preload"])
def test_unknown_model_name_is_model_not_found(tiny: Path, flag: str) -> None:
    run = wasinn_run(tiny, "--model", "other", "--prompt", "x", flag=flag)
    assert run.returncode == 1
    assert b"load_by_name_with_config failed: errno 103" in run.stderr  # ModelNotFound (WasmEdge numbering)
    assert b"no model named 'other'" in run.stderr
