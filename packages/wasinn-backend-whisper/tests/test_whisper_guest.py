"""End to end: our C guest written to WasmEdge's Whisper conventions (guests/whisper, standard imports
only, so read under the witx numbering) run as WasmEdge's command runs it:

    wasinn run --dir . --nn-preload default:Whisper:CPU:tiny.bin whisper.wasm audio.wav

its stdout compared byte for byte with whisper.cpp called natively with the same options."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from whisper_native import Native

GUEST = Path(__file__).resolve().parents[3] / "guests" / "whisper" / "whisper.wasm"


def wasinn_run(cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "WASINN_BACKENDS": "whisper"}
    return subprocess.run([sys.executable, "-m", "wasinn", "run", "--dir", ".", *args], cwd=cwd,
                          capture_output=True, timeout=600, check=False, env=env)


def test_nn_preload_transcribes_as_native(files: Path, tiny: Path, audio: Path, native: Native) -> None:
    run = wasinn_run(files, "--nn-preload", f"default:Whisper:CPU:{tiny.name}", str(GUEST), audio.name)
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert run.stdout == native.transcribe(audio)
    assert run.stdout.startswith(b"[00:00:0") and b" --> " in run.stdout and run.stdout.endswith(b"\n")


def test_guest_bytes_and_metadata_transcribe_as_native(files: Path, tiny: Path, audio: Path,
                                                       native: Native) -> None:
    # The guest reads the model itself and loads it with encoding 9: probed in a child first.
    options = {"beam-size": 1, "no-timestamps": True, "threads": 1}
    run = wasinn_run(files, str(GUEST), audio.name, tiny.name, "--metadata", json.dumps(options))
    assert run.returncode == 0, run.stderr.decode(errors="replace")
    assert run.stdout == native.transcribe(audio, beam_size=1, no_timestamps=True, threads=1)


def test_broken_audio_is_an_errno_not_a_dead_host(files: Path, tiny: Path) -> None:
    (files / "broken.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEfmt \xff\xff\xff\xff")
    run = wasinn_run(files, "--nn-preload", f"default:Whisper:CPU:{tiny.name}", str(GUEST), "broken.wav")
    assert run.returncode == 1
    assert b"set_input 0 (audio) failed: errno 1" in run.stderr
