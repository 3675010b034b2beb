"""pywhispercpp's sharp edges, each shown on the real binding in a child process (the control: what
happens without wasinn's guard) and then met by the backend (the process lives, the guest gets an errno).
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from wasinn_backend_whisper import validate
from wasinn_backend_whisper.testing import TinyWhisper, model_bytes

import wasinn
from wasinn.testing.guest import TrampolineGuest

WHISPER, INVALID_ARGUMENT = 9, 1


def child(script: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", script, *args], capture_output=True, timeout=300, check=False)


NULL_CONTEXT = r"""
import sys, _pywhispercpp as pw
pw.whisper_log_set(None)
p = pw.whisper_context_default_params(); p.use_gpu = False
ctx = pw.whisper_init_from_file_with_params(sys.argv[1], p)
print("object", ctx is not None and bool(ctx), flush=True)
pw.whisper_model_n_vocab(ctx)  # whisper.cpp returned NULL: this dereferences it
"""


def test_null_context_control_crashes_the_process(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"not a model at all")
    run = child(NULL_CONTEXT, str(bad))
    assert b"object True" in run.stdout  # no exception, no None: a live-looking object
    assert run.returncode == -signal.SIGSEGV


def test_null_context_is_caught_even_past_the_validator(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    # A file the validator would refuse, handed on anyway: whisper.cpp's NULL must still not be used.
    # The validator is replaced in this process, so the guest's model must load here, not in a worker.
    good = validate.validate(model_bytes())
    monkeypatch.setattr(validate, "validate", lambda data: good)
    monkeypatch.setenv("WASINN_WHISPER_PROBE", "never")
    broken = model_bytes()[:-1000]
    with wasinn.WasiNnHost(limits=wasinn.Limits(guest_models="in-process")) as host:
        guest = TrampolineGuest(host)
        try:
            assert guest.load([broken], encoding=WHISPER).errno == INVALID_ARGUMENT
        finally:
            guest.close()
    assert "whisper.cpp cannot load the model" in caplog.text


LOG_CALLBACK = r"""
import sys, _pywhispercpp as pw
pw.whisper_log_set(lambda level, text: None)
p = pw.whisper_context_default_params(); p.use_gpu = False
ctx = pw.whisper_init_from_file_with_params(sys.argv[1], p)
"""

BACKEND_EXIT = r"""
import sys
from wasinn_backend_whisper.backend import WhisperBackend
import wasinn
from wasinn.testing.guest import TrampolineGuest
with wasinn.WasiNnHost() as host:
    host.register_model("default", sys.argv[1])
    guest = TrampolineGuest(host)
    assert guest.load_by_name("default").ok
    guest.close()
print("done", flush=True)
"""


def test_log_callback_left_installed_control_aborts_at_exit(tiny: Path) -> None:
    run = child(LOG_CALLBACK, str(tiny))
    assert run.returncode == -signal.SIGABRT
    assert b"GIL" in run.stderr


def test_backend_process_exits_cleanly(tiny: Path) -> None:
    run = child(BACKEND_EXIT, str(tiny))
    assert run.returncode == 0, run.stderr.decode(errors="replace")[-2000:]
    assert b"Fatal Python error" not in run.stderr


ALL_F32 = r"""
import sys, numpy as np, _pywhispercpp as pw
pw.whisper_log_set(None)
p = pw.whisper_context_default_params(); p.use_gpu = False
ctx = pw.whisper_init_from_file_with_params(sys.argv[1], p)
params = pw.whisper_full_default_params(pw.WHISPER_SAMPLING_GREEDY)
params.n_threads = 1
pcm = np.zeros(16000, np.float32)
pw.whisper_full(ctx, params, pcm, len(pcm))
print("survived", flush=True)
"""


def test_all_f32_model_control_aborts_in_the_encoder(tmp_path: Path) -> None:
    f32 = tmp_path / "f32.bin"
    f32.write_bytes(model_bytes(TinyWhisper(ftype=0)))
    run = child(ALL_F32, str(f32))
    assert run.returncode < 0 and b"survived" not in run.stdout


@pytest.mark.parametrize("named", [False, True])
def test_all_f32_model_is_refused(guest: TrampolineGuest, tmp_path: Path, named: bool,
                                  caplog: pytest.LogCaptureFixture) -> None:
    data = model_bytes(TinyWhisper(ftype=0))
    if named:
        path = tmp_path / "f32.bin"
        path.write_bytes(data)
        guest.host.register_model("f32", path)
        call = guest.load_by_name("f32")
    else:
        call = guest.load([data], encoding=WHISPER)
    assert call.errno == INVALID_ARGUMENT
    assert "all-f32" in caplog.text
