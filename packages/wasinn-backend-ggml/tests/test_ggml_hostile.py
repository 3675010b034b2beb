"""Hostile GGUF files: each gets invalid_argument and a log line saying why; the host lives on."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import WASMEDGE_FUNCTIONS
from wasinn_backend_ggml import validate
from wasinn_backend_ggml.testing import vocabulary, write_tiny_llama

import wasinn
from wasinn.testing.guest import TrampolineGuest

HERE = Path(__file__).parent
_NATIVE_LOAD = """
import sys, llama_cpp
llm = llama_cpp.Llama(sys.argv[1], n_ctx=64, verbose=False)
llm.tokenize(b"A hello")
"""


def tokens_with(change: dict[int, str]) -> list[str]:
    tokens = vocabulary()[0]
    for index, text in change.items():
        tokens[index] = text
    return tokens


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    good = write_tiny_llama(folder / "good.gguf")
    data = good.read_bytes()
    files = {
        "repeated token": write_tiny_llama(folder / "dup.gguf", tokens=tokens_with({300: "▁the"})),
        "missing byte token": write_tiny_llama(folder / "nobyte.gguf", tokens=tokens_with({3 + 0x41: "▁zz"})),
        "NUL in a token": write_tiny_llama(folder / "nul.gguf", tokens=tokens_with({298: "▁\0\0"})),
    }
    for name, blob in {"truncated header": data[:200], "truncated weights": data[:-1000],
                       "version 1": data[:4] + b"\x01\0\0\0" + data[8:],
                       "absurd tensor count": data[:8] + b"\xff" * 8 + data[16:]}.items():
        path = folder / f"{name.replace(' ', '_')}.gguf"
        path.write_bytes(blob)
        files[name] = path
    return files


@pytest.mark.parametrize("kind", ["repeated token", "missing byte token"])
def test_these_files_really_abort_llama_cpp(hostile: dict[str, Path], kind: str) -> None:
    # Why the checks exist: llama.cpp itself kills the process on these (SIGABRT).
    result = subprocess.run([sys.executable, "-c", _NATIVE_LOAD, str(hostile[kind])], capture_output=True,
                            timeout=120, check=False)
    assert result.returncode < 0


@pytest.mark.parametrize("kind", ["repeated token", "missing byte token", "NUL in a token", "truncated header",
                                  "truncated weights", "version 1", "absurd tensor count"])
@pytest.mark.parametrize("how", ["guest bytes", "named model"])
def test_hostile_file_is_invalid_argument_with_a_reason(hostile: dict[str, Path], kind: str, how: str,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with wasinn.WasiNnHost() as host:
        g = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        if how == "guest bytes":
            errno = g.load([hostile[kind].read_bytes()], encoding=6).errno
        else:
            host.register_model("bad", hostile[kind])
            errno = g.load_by_name("bad").errno
        assert errno == 1
        assert "malformed GGUF model" in caplog.text or "not a valid gguf" in caplog.text
        # the host still serves a good model afterwards
        host.register_model("good", hostile["truncated header"].with_name("good.gguf"))
        graph = g.load_by_name("good", json.dumps({"n-predict": 2, "temp": 0.0}))
        assert graph.ok
        g.close()


def test_validation_names_the_problem(hostile: dict[str, Path]) -> None:
    with pytest.raises(validate.GgufError, match="appears twice"):
        validate.read_file(str(hostile["repeated token"]))
    with pytest.raises(validate.GgufError, match="byte token"):
        validate.read_file(str(hostile["missing byte token"]))
    with pytest.raises(validate.GgufError, match=re.escape("read by llama.cpp as '▁'")):  # cut at the NUL: a repeat
        validate.read_file(str(hostile["NUL in a token"]))
    with pytest.raises(validate.GgufError, match="past the end"):
        validate.read_file(str(hostile["truncated weights"]))


def test_what_llama_cpp_accepts_is_accepted(tmp_path: Path) -> None:
    # Empty tokens are renamed by llama.cpp ("[EMPTY_<id>]"), so they are no repeat: the file loads.
    model = write_tiny_llama(tmp_path / "empty.gguf", tokens=tokens_with({300: "", 301: ""}))
    validate.read_file(str(model))
    result = subprocess.run([sys.executable, "-c", _NATIVE_LOAD, str(model)], capture_output=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr[-500:]


def test_the_probe_catches_what_validation_would_miss(hostile: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    # Second line of defence: with the tokenizer checks switched off, the child-process probe still
    # sees llama.cpp abort on the repeated token, and the guest gets invalid_argument.
    monkeypatch.setattr(validate, "_check_tokenizer", lambda info: None)
    # In-process (the probe exists for that policy: an isolated worker is its own probe, see
    # wasinn-core's test_worker.py::test_a_model_that_crashes_its_worker_at_load_is_malformed).
    with wasinn.WasiNnHost(limits=wasinn.Limits(guest_models="in-process")) as host:
        g = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
        assert g.load([hostile["repeated token"].read_bytes()], encoding=6).errno == 1
        assert "crashes llama.cpp (SIGABRT in a probe process whose memory cap is" in caplog.text
        g.close()


def test_fuzz_mutated_files_never_kill_the_host(tmp_path: Path) -> None:
    """300 mutated tiny models (fixed seed) loaded and run by a guest, with the checks alone (no
    probe), in a child process: if llama.cpp killed it, the last case it printed is the culprit."""
    model = write_tiny_llama(tmp_path / "tiny.gguf")
    env = {**os.environ, "WASINN_GGML_PROBE": "never"}
    result = subprocess.run([sys.executable, str(HERE / "ggml_fuzz_worker.py"), str(model), "3", "300"],
                            capture_output=True, text=True, timeout=600, check=False, env=env)
    lines = result.stdout.strip().splitlines()
    assert result.returncode == 0, f"worker died ({result.returncode}) at {lines[-1:]}: {result.stderr[-2000:]}"
    outcomes = json.loads(lines[-1].removeprefix("outcomes "))
    assert sum(outcomes.values()) == 300
    assert outcomes.get("load:1", 0) > 100 and outcomes.get("compute:0", 0) > 10  # both paths exercised


def test_a_guest_model_is_probed_once(tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wasinn.worker import probe

    runs: list[object] = []
    real_run = probe.run_probe

    def counting_run(*args: Any, **kwargs: Any) -> probe.ProbeResult:
        runs.append(args)
        return real_run(*args, **kwargs)

    monkeypatch.setattr(probe, "run_probe", counting_run)
    data = tiny.read_bytes() + b"\0" * 64  # bytes no other test has probed in this process
    with wasinn.WasiNnHost(limits=wasinn.Limits(guest_models="in-process")) as host:  # isolated: no probe
        for _ in range(3):  # three loads of the same bytes, each to a new temporary file
            g = TrampolineGuest(host, functions=WASMEDGE_FUNCTIONS)
            assert g.load([data], encoding=6).ok
            g.close()
    assert len(runs) == 1
