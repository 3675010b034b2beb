"""WasmEdge's GGML contract through a real wasm guest (the trampoline) and the default ranking:
normalised embeddings and pooling, grammar and json-schema, the options table, unload and load
again, output metadata before compute, and a missing preload (ModelNotFound)."""

from __future__ import annotations

import codecs
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import llama_cpp
import numpy as np
import pytest
from conftest import WASMEDGE_FUNCTIONS
from ggml_native import Native
from test_ggml_backend import GREEDY, PROMPT, metadata, open_context, set_bytes
from wasinn_backend_ggml import options as ggml_options
from wasinn_backend_ggml.testing import TinyLlama, write_tiny_llama

import wasinn
from wasinn.testing.guest import TrampolineGuest

ROOT = Path(__file__).resolve().parents[3]
INVALID_ARGUMENT, UNSUPPORTED_OPERATION, MODEL_NOT_FOUND = 1, 6, 103
PEOPLE = {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"},
                                           "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2}},
          "required": ["name", "age"]}


def embed(guest: TrampolineGuest, config: dict[str, Any], text: bytes = b"hello world") -> list[float]:
    ctx = open_context(guest, {"embedding": True, "ctx-size": 128, **config})
    assert set_bytes(guest, ctx, 0, text) == 0
    assert guest.compute(ctx).ok
    output = json.loads(guest.get_output_bytes(ctx, 0)[1])
    assert output["n_embedding"] == len(output["embedding"])
    values: list[float] = output["embedding"]
    return values


@pytest.mark.parametrize(("pooling", "norm"), [(-1, 2), (0, 2), (1, 2), (2, 2), (3, 2), (1, -1), (1, 0), (1, 1),
                                               (1, 3)])
def test_embeddings_are_normalised_as_wasmedge(guest: TrampolineGuest, native: Native, pooling: int,
                                               norm: int) -> None:
    got = embed(guest, {"pooling-type": pooling, "embd-normalize": norm})
    expected = native.embed("hello world", pooling=pooling, norm=norm)
    assert np.array_equal(np.float32(got), np.float32(expected))  # WasmEdge's 10 digits hold a float32
    raw = np.float32(native.raw_embedding("hello world", pooling=pooling))
    if norm == 2:
        assert math.isclose(float(np.linalg.norm(got)), 1.0, rel_tol=1e-6)
        assert np.allclose(got, raw / np.linalg.norm(raw), rtol=0, atol=1e-6)
    elif norm == -1:
        assert np.array_equal(np.float32(got), raw)
    elif norm == 0:
        assert math.isclose(max(abs(v) for v in got), 32760.0, rel_tol=1e-6)


def test_embedding_json_is_wasmedges(guest: TrampolineGuest) -> None:
    ctx = open_context(guest, {"embedding": True, "ctx-size": 128})
    set_bytes(guest, ctx, 0, b"hello")
    assert guest.compute(ctx).ok
    raw = guest.get_output_bytes(ctx, 0)[1].decode()
    assert raw.startswith('{"n_embedding": 64, "embedding": [')
    numbers = raw.split("[", 1)[1].rstrip("]}").split(",")
    assert all(len(re.sub(r"[-.]|e.*", "", n).lstrip("0")) <= 10 for n in numbers)  # fmt's {:.10}


@pytest.mark.parametrize("config", [{"reranking": True}, {"embedding": True, "pooling-type": 4}])
def test_rank_pooling_needs_a_classifier_head(guest: TrampolineGuest, config: dict[str, Any]) -> None:
    # llama.cpp aborts the process for rank pooling on a model without one: refused first
    ctx = open_context(guest, {"ctx-size": 128, **config})
    set_bytes(guest, ctx, 0, b"hello")
    call = guest.compute(ctx)
    assert call.errno == INVALID_ARGUMENT


GRAMMAR = r'root ::= ("yes" | "no") " " [a-z]{2,4} "."'


@pytest.mark.parametrize("where", ["config", "metadata"])
def test_grammar_constrains_the_output_as_native(guest: TrampolineGuest, native: Native, where: str) -> None:
    config = {**GREEDY, "n-predict": 32}
    ctx = open_context(guest, {**config, "grammar": GRAMMAR} if where == "config" else config)
    if where == "metadata":
        assert set_bytes(guest, ctx, 1, json.dumps({"grammar": GRAMMAR}).encode()) == 0
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    text = guest.get_output_bytes(ctx, 0)[1]
    assert re.fullmatch(rb"(yes|no) [a-z]{2,4}\.", text), text
    llm = native.llama(ctx_size=128)
    tokens = llm.tokenize(PROMPT, add_bos=True, special=True)
    out = []
    for token in llm.generate(tokens, temp=0.0, grammar=llama_cpp.LlamaGrammar.from_string(GRAMMAR, verbose=False),
                              reset=True):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(out) >= 32:
            break
        out.append(token)
    assert text == llm.detokenize(out)


@pytest.mark.parametrize("prompt", [b"hello", b"the cat", b"a dog", b"world", b"llama said", b"x", b"json",
                                    b"wasm token"])
def test_json_schema_gives_schema_valid_json(guest: TrampolineGuest, prompt: bytes) -> None:
    # On these prompts llama-cpp-python's own converter lets the tiny model write raw control
    # characters and bytes that are not UTF-8 into the strings (checked below): not JSON.
    loose = _native_constrained(prompt, llama_cpp.LlamaGrammar.from_json_schema(json.dumps(PEOPLE), verbose=False))
    with pytest.raises(ValueError):
        json.loads(loose)
    ctx = open_context(guest, {**GREEDY, "ctx-size": 512, "n-predict": 200, "json-schema": json.dumps(PEOPLE)})
    set_bytes(guest, ctx, 0, prompt)
    call = guest.compute(ctx)
    assert call.ok
    text = guest.get_output_bytes(ctx, 0)[1]
    if metadata(guest, ctx)["output_tokens"] < 200:  # ended by the grammar: complete JSON
        value = json.loads(text)
        jsonschema.validate(value, PEOPLE)
    else:  # cut by n-predict: still UTF-8 with no control characters (a JSON prefix)
        # (the last token may end inside a character: an incremental decoder allows that, nothing else)
        prefix = codecs.getincrementaldecoder("utf-8")().decode(text, final=False)
        assert prefix.startswith("{") and not re.search(r"[\x00-\x1f]", prefix)


@pytest.mark.parametrize("long_token", [False, True])
def test_tokens_that_are_not_utf8_are_found_without_keeping_every_piece(tmp_path: Path, long_token: bool) -> None:
    # The ban list (byte tokens C0, C1, F5-FF) is computed once per graph from every token's bytes;
    # those bytes are not kept (for Gemma's vocabulary they were 29 MB), only the generated tokens'.
    from wasinn_backend_ggml.testing import vocabulary

    tokens = vocabulary()[0]
    if long_token:  # a piece longer than the scan's buffer, holding a byte token's neighbour
        tokens[300] = "▁" + "x" * 1000
    model = write_tiny_llama(tmp_path / "model.gguf", tokens=tokens)
    with wasinn.WasiNnHost() as host:
        host.register_model("default", model)
        guest = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        try:
            ctx = open_context(guest, {**GREEDY, "ctx-size": 256, "n-predict": 40, "json-schema": json.dumps(PEOPLE)})
            set_bytes(guest, ctx, 0, b"json")
            assert guest.compute(ctx).ok
            graph = guest.state.context(ctx).context.state.graph
            assert graph.not_utf8 == [3 + b for b in (0xC0, 0xC1, *range(0xF5, 0x100))]
            assert 0 < len(graph.pieces) <= metadata(guest, ctx)["output_tokens"]
        finally:
            guest.close()


def _native_constrained(prompt: bytes, grammar: llama_cpp.LlamaGrammar) -> bytes:
    native = _native_constrained.llm  # type: ignore[attr-defined]
    tokens = native.tokenize(prompt, add_bos=True, special=True)
    out: list[int] = []
    for token in native.generate(tokens, temp=0.0, grammar=grammar, reset=True):
        if llama_cpp.llama_vocab_is_eog(native._model.vocab, token) or len(out) >= 60:
            break
        out.append(token)
    return bytes(native.detokenize(out))


@pytest.fixture(autouse=True)
def _native_llm(native: Native) -> None:
    _native_constrained.llm = native.llama(ctx_size=256)  # type: ignore[attr-defined]


@pytest.mark.parametrize(("key", "value"), [
    ("grammar", "root ::= undefined-rule"),
    ("grammar", "root ::= root \"a\""),  # left recursion
    ("grammar", "start ::= \"a\""),  # no root
    ("grammar", "root ::= \"a\"{1000000}"),  # expands to a million symbols
    ("grammar", "root ::= " + "(" * 500 + "\"a\"" + ")" * 500),  # recursion of llama.cpp's parser
    ("grammar", "root ::= [a"),
    ("json-schema", "{not json"),
    ("json-schema", json.dumps({"$ref": "https://example.com/schema.json"})),  # the converter would fetch it
    ("json-schema", json.dumps({"$ref": "http://127.0.0.1:1/x"})),
    ("json-schema", json.dumps({"type": "array", "minItems": 10 ** 9})),
    ("json-schema", json.dumps({"type": "string", "maxLength": 10 ** 6})),
    ("json-schema", json.dumps({"type": "string", "pattern": "((a{100}){100}){100}"})),
    ("json-schema", json.dumps({"type": "nonsense"})),
    ("json-schema", "[" * 100000 + "]" * 100000),
])
@pytest.mark.parametrize("where", ["config", "metadata"])
def test_bad_grammars_and_schemas_are_invalid_argument(guest: TrampolineGuest, key: str, value: str,
                                                      where: str) -> None:
    if where == "config":
        graph = guest.load_by_name("default", json.dumps({key: value}))
        assert graph.errno == INVALID_ARGUMENT
        return
    ctx = open_context(guest, GREEDY)
    assert set_bytes(guest, ctx, 1, json.dumps({key: value}).encode()) == INVALID_ARGUMENT
    set_bytes(guest, ctx, 0, PROMPT)  # the context goes on with its previous options
    assert guest.compute(ctx).ok


def test_sampling_keys_llama_cpp_python_exposes_match_native(guest: TrampolineGuest, native: Native) -> None:
    options = {"temp": 0.9, "top-k": 12, "min-p": 0.02, "typ-p": 0.95, "top-p": 0.9, "seed": 99,
               "repeat-penalty": 1.3, "presence-penalty": 0.2, "frequency-penalty": 0.1, "last-n-penalty": 64,
               "ctx-size": 128, "n-predict": 24}
    ctx = open_context(guest, options)
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    llm = native.llama(ctx_size=128, seed=99)
    llm.set_seed(99)
    tokens = llm.tokenize(PROMPT, add_bos=True, special=True)
    out: list[int] = []
    for token in llm.generate(tokens, temp=0.9, top_k=12, min_p=0.02, typical_p=0.95, top_p=0.9, repeat_penalty=1.3,
                              presence_penalty=0.2, frequency_penalty=0.1, reset=True):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(out) >= 24:
            break
        out.append(token)
    assert guest.get_output_bytes(ctx, 0)[1] == llm.detokenize(out)


@pytest.mark.parametrize("extra", [{"mirostat": 2, "mirostat-eta": 0.2}, {"mirostat": 1},
                                   {"xtc-probability": 0.5, "xtc-threshold": 0.1},
                                   {"dynatemp-range": 0.5, "dynatemp-exponent": 1.2},
                                   {"dry-multipier": 0.8, "dry-base": 1.75, "dry-allowed-length": 2},
                                   {"ignore-eos": True}, {"cache-type-k": 0, "cache-type-v": 0},
                                   {"cache-type-k": 8},
                                   {"rope-freq-base": 5000.0, "rope-freq-scale": 0.5, "yarn-ext-factor": 0.0},
                                   {"threads-batch": 1, "threads": 1}])
def test_other_sampling_and_context_keys_are_honoured(guest: TrampolineGuest, extra: dict[str, Any]) -> None:
    ctx = open_context(guest, {"temp": 0.7, "seed": 3, "ctx-size": 128, "n-predict": 12, **extra})
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    assert metadata(guest, ctx)["output_tokens"] == 12


@pytest.mark.parametrize("extra", [{"flash-attn": "on", "cache-type-v": 8},
                                   {"flash-attn": "on", "cache-type-k": 8, "cache-type-v": 8}])
def test_flash_attention_with_quantized_caches(tmp_path: Path, extra: dict[str, Any]) -> None:
    # q8_0 blocks are 32 values: newer llama.cpp (0.3.36) refuses them for the tiny model's 16-wide
    # heads, so this model has 32-wide ones
    model = write_tiny_llama(tmp_path / "wide-heads.gguf", TinyLlama(n_head=2, n_head_kv=1))
    with wasinn.WasiNnHost() as host:
        host.register_model("default", model)
        guest = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        try:
            ctx = open_context(guest, {"temp": 0.7, "seed": 3, "ctx-size": 128, "n-predict": 12, **extra})
            set_bytes(guest, ctx, 0, PROMPT)
            assert guest.compute(ctx).ok
            assert metadata(guest, ctx)["output_tokens"] == 12
        finally:
            guest.close()


@pytest.mark.parametrize(("key", "value"), [("cache-type-k", 15), ("flash-attn", "maybe"), ("mirostat", 3),
                                            ("pooling-type", 7), ("top-k", -1)])
def test_honoured_keys_check_their_values(guest: TrampolineGuest, key: str, value: Any) -> None:
    assert guest.load_by_name("default", json.dumps({key: value})).errno == INVALID_ARGUMENT


def test_metadata_is_readable_after_set_input_before_compute(guest: TrampolineGuest, native: Native) -> None:
    ctx = open_context(guest, GREEDY)
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    set_bytes(guest, ctx, 0, b"the cat")  # a new prompt: its tokens known, nothing generated yet
    info = metadata(guest, ctx)
    assert info["input_tokens"] == native.generate(b"the cat", 1).input_tokens
    assert info["output_tokens"] == 0


def test_unload_then_load_the_same_name_again(guest: TrampolineGuest, native: Native) -> None:
    expected = native.generate(PROMPT, 16).text
    for _ in range(3):
        graph = guest.load_by_name("default", json.dumps(GREEDY))
        assert graph.ok
        ctx = guest.init_execution_context(graph.value)  # type: ignore[arg-type]
        set_bytes(guest, ctx.value, 0, PROMPT)  # type: ignore[arg-type]
        assert guest.compute(ctx.value).ok  # type: ignore[arg-type]
        assert guest.get_output_bytes(ctx.value, 0)[1] == expected  # type: ignore[arg-type]
        assert guest.finalize_execution_context(ctx.value).ok  # type: ignore[arg-type]
        assert guest.unload(graph.value).ok  # type: ignore[arg-type]


def test_options_table_in_the_docs_is_generated() -> None:
    docs = (ROOT / "docs" / "backends" / "ggml.md").read_text()
    begin, end = "<!-- options table: python -m wasinn_backend_ggml.options -->", "<!-- end of options table -->"
    assert docs.split(begin, 1)[1].split(end, 1)[0].strip() == ggml_options.markdown_table().strip()


def test_every_honoured_key_names_an_option() -> None:
    fields = set(ggml_options.Options.__dataclass_fields__)
    for key, spec in ggml_options.WASMEDGE_KEYS.items():
        assert spec.field is None or spec.field in fields, key
        assert spec.note or spec.field, key
    # what llama-cpp-python's Llama exposes for generation, each honoured under WasmEdge's name
    for key in ("temp", "top-p", "top-k", "min-p", "typ-p", "repeat-penalty", "presence-penalty",
                "frequency-penalty", "last-n-penalty", "mirostat", "mirostat-eta", "grammar", "seed", "ctx-size",
                "batch-size", "ubatch-size", "threads", "threads-batch", "rope-scaling-type", "pooling-type",
                "rope-freq-base", "rope-freq-scale", "yarn-ext-factor", "yarn-attn-factor", "yarn-beta-fast",
                "yarn-beta-slow", "yarn-orig-ctx", "embedding", "no-kv-offload", "flash-attn", "cache-type-k",
                "cache-type-v", "n-gpu-layers", "main-gpu", "use-mmap", "use-mlock", "check-tensors"):
        assert ggml_options.WASMEDGE_KEYS[key].field is not None, key


def test_ignored_keys_are_logged_with_the_reason(guest: TrampolineGuest, caplog: pytest.LogCaptureFixture) -> None:
    open_context(guest, {**GREEDY, "n-parallel": 4, "hf-repo": "x/y", "port": 8080})
    assert "n-parallel: one sequence per wasi-nn context" in caplog.text
    assert "hf-repo: names a host file or URL" in caplog.text


@pytest.mark.parametrize("spelling", ["default:GGML:AUTO:{missing}", "default:ggml:CPU:{missing}",
                                      "default:GGUF:AUTO:{missing}"])
def test_missing_preload_starts_and_load_is_model_not_found(tmp_path: Path, spelling: str) -> None:
    # WasmEdge starts; the guest's load_by_name answers ModelNotFound (its CI runs a guest that way)
    missing = tmp_path / "no-such-model.gguf"
    env = {**os.environ, "WASINN_BACKENDS": "ggml"}
    run = subprocess.run([sys.executable, "-m", "wasinn", "run", "--nn-preload", spelling.format(missing=missing),
                          str(ROOT / "guests" / "llm-chat" / "llm-chat.wasm"), "--prompt", "x"],
                         capture_output=True, timeout=300, check=False, env=env)
    assert run.returncode == 1, run.stderr.decode(errors="replace")
    assert b"load_by_name_with_config failed: errno 103" in run.stderr
    assert b"does not exist" in run.stderr
    assert not missing.exists()


def test_a_missing_preload_of_another_encoding_still_stops_the_run(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "wasinn", "run", "--nn-preload",
                          f"default:ONNX:CPU:{tmp_path / 'none.onnx'}",
                          str(ROOT / "guests" / "llm-chat" / "llm-chat.wasm"), "--prompt", "x"],
                         capture_output=True, timeout=300, check=False)
    assert run.returncode != 0 and b"is not a file" in run.stderr


@pytest.mark.parametrize("options", [{"mmproj": "mmproj.gguf"}, {"image": "cat.png"},
                                     {"mmproj": "/models/mmproj-f16.gguf", "image": "a.jpg"}])
def test_vision_is_refused_precisely(guest: TrampolineGuest, options: dict[str, Any],
                                     caplog: pytest.LogCaptureFixture) -> None:
    assert guest.load_by_name("default", json.dumps(options)).errno == UNSUPPORTED_OPERATION
    ctx = open_context(guest, GREEDY)
    assert set_bytes(guest, ctx, 1, json.dumps(options).encode()) == UNSUPPORTED_OPERATION
    assert "vision (a multimodal projector and an image) is not supported" in caplog.text
    # an empty value (what a text-only guest may send) is no request for vision
    assert set_bytes(guest, ctx, 1, json.dumps({"mmproj": "", "image": ""}).encode()) == 0


def test_vision_refusal_is_wasinns_not_the_runtimes(guest: TrampolineGuest, tiny: Path, tmp_path: Path,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    """llama-cpp-python's mtmd bindings encode an image into a raw llama_context with a projector the
    test writes (so vision is within reach of the runtime); a guest naming that same projector is
    still refused, with the reason (docs/backends/ggml.md, Vision)."""
    import ctypes

    from llama_cpp import _internals
    from llama_cpp import mtmd_cpp as mtmd
    from wasinn_backend_ggml.testing import write_tiny_mmproj

    mmproj = write_tiny_mmproj(tmp_path / "mmproj.gguf")
    model = _internals.LlamaModel(path_model=str(tiny), params=llama_cpp.llama_model_default_params(), verbose=False)
    params = mtmd.mtmd_context_params_default()
    params.use_gpu, params.print_timings, params.n_threads = False, False, 1
    vision = mtmd.mtmd_init_from_file(str(mmproj).encode(), model.model, params)
    assert vision and mtmd.mtmd_support_vision(vision)
    cparams = llama_cpp.llama_context_default_params()
    cparams.n_ctx = cparams.n_batch = 128
    context = _internals.LlamaContext(model=model, params=cparams, verbose=False)
    bitmap = mtmd.mtmd_bitmap_init(16, 16, (ctypes.c_ubyte * (16 * 16 * 3))(*([128] * (16 * 16 * 3))))
    chunks = mtmd.mtmd_input_chunks_init()
    try:
        text = mtmd.mtmd_input_text()
        text.text = b"describe " + mtmd.mtmd_default_marker() + b" now"
        if any(name == "text_len" for name, *_ in mtmd.mtmd_input_text._fields_):  # newer mtmd (0.3.36)
            text.text_len = len(text.text)
        text.add_special = text.parse_special = True
        bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
        assert mtmd.mtmd_tokenize(vision, chunks, ctypes.byref(text), bitmaps, 1) == 0
        kinds = [mtmd.mtmd_input_chunk_get_type(mtmd.mtmd_input_chunks_get(chunks, i))
                 for i in range(mtmd.mtmd_input_chunks_size(chunks))]
        assert kinds == [mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT, mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE,
                         mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT]
        image = mtmd.mtmd_input_chunks_get(chunks, 1)
        assert mtmd.mtmd_input_chunk_get_n_tokens(image) == 16  # (32 / 8)**2 patches
        n_past = llama_cpp.llama_pos(0)
        assert mtmd.mtmd_helper_eval_chunk_single(vision, context.ctx, image, 0, 0, 128, False,
                                                  ctypes.byref(n_past)) == 0
        assert n_past.value == 16
    finally:
        mtmd.mtmd_input_chunks_free(chunks)
        mtmd.mtmd_bitmap_free(bitmap)
        mtmd.mtmd_free(vision)
        context.close()
        model.close()

    assert guest.load_by_name("default", json.dumps({"mmproj": str(mmproj)})).errno == UNSUPPORTED_OPERATION
    ctx = open_context(guest, GREEDY)
    assert set_bytes(guest, ctx, 1, json.dumps({"mmproj": str(mmproj), "image": "a.png"}).encode()) \
        == UNSUPPORTED_OPERATION
    assert "host file paths chosen by the guest" in caplog.text
