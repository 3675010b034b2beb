"""The backend through the wasi-nn ABI (a real wasm guest calling each import, the default ranking),
its text compared byte for byte with whisper.cpp called natively with WasmEdge's options."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from wasinn_backend_whisper.testing import TinyWhisper, model_bytes, wav_bytes
from whisper_native import Native

import wasinn
from wasinn.testing.guest import TrampolineGuest

WHISPER = 9  # WasmEdge's encoding number, and wasinn's under the witx numbering too
F32, U8 = 1, 3
INVALID_ARGUMENT, INVALID_ENCODING, UNSUPPORTED = 1, 2, 6


def set_audio(guest: TrampolineGuest, ctx: int, data: bytes, *, type_number: int = F32,
              dims: tuple[int, ...] | None = None) -> int:
    """WasmEdge's example: the WAV's bytes declared as f32 with dims [1, byte length]."""
    record = guest.tensor_record(data, dims or (1, len(data)), type_number)
    return guest.call("set_input", ctx, 0, record)


def transcribe(guest: TrampolineGuest, graph: int, audio: bytes, metadata: dict[str, object] | None = None) -> bytes:
    ctx = guest.init_execution_context(graph)
    assert ctx.ok and ctx.value is not None
    if metadata is not None:
        raw = json.dumps(metadata).encode()
        assert guest.call("set_input", ctx.value, 1, guest.tensor_record(raw, (1, len(raw)), U8)) == 0
    assert set_audio(guest, ctx.value, audio) == 0
    assert guest.compute(ctx.value).ok
    call, text = guest.get_output_bytes(ctx.value, 0)
    assert call.ok
    return text


def test_named_model_text_equals_native(guest: TrampolineGuest, audio: Path, native: Native) -> None:
    graph = guest.load_by_name("default")
    assert graph.ok and graph.value is not None
    text = transcribe(guest, graph.value, audio.read_bytes())
    assert text == native.transcribe(audio)
    assert text.startswith(b"[00:00:00.") and b" --> " in text and text.endswith(b"\n")


def test_guest_bytes_encoding_9_equals_native(guest: TrampolineGuest, tiny: Path, audio: Path,
                                              native: Native) -> None:
    graph = guest.load([tiny.read_bytes()], encoding=WHISPER)
    assert graph.ok and graph.value is not None
    assert transcribe(guest, graph.value, audio.read_bytes()) == native.transcribe(audio)


def test_options_no_timestamps_greedy_equal_native(guest: TrampolineGuest, audio: Path, native: Native) -> None:
    graph = guest.load_by_name("default", json.dumps({"beam-size": 1, "threads": 1}))
    assert graph.ok and graph.value is not None
    text = transcribe(guest, graph.value, audio.read_bytes(), {"no-timestamps": True, "beam-size": 1,
                                                                 "threads": 1})
    assert text == native.transcribe(audio, no_timestamps=True, beam_size=1, threads=1)
    assert not text.startswith(b"[")


def test_explain_picks_whisper(tiny: Path) -> None:
    with wasinn.WasiNnHost() as host:
        ranking = host.rank(host.describe_model([tiny.read_bytes()]))
        assert ranking.candidates[0].backend == "whisper"
        assert host.describe_model([tiny.read_bytes()]).format == wasinn.ModelFormat.WHISPER


@pytest.mark.parametrize("target", ["gpu", "tpu"])
def test_gpu_request_is_refused_plainly(guest: TrampolineGuest, tiny: Path, target: str,
                                        caplog: pytest.LogCaptureFixture) -> None:
    call = guest.load([tiny.read_bytes()], encoding=WHISPER, target=target)
    assert call.errno == UNSUPPORTED
    assert "CPU" in caplog.text or "cpu" in caplog.text


@pytest.mark.parametrize("wav", [
    wav_bytes(0.5, rate=8000), wav_bytes(0.5, bits=8), wav_bytes(0.5, bits=32), wav_bytes(0.5, channels=3),
    b"RIFF\x04\x00\x00\x00WAVE", b"OggS" + bytes(40), wav_bytes(0.5)[:-3], wav_bytes(0.5) + b"\0",
])
def test_wav_wasmedge_refuses_is_invalid_argument(guest: TrampolineGuest, wav: bytes) -> None:
    graph = guest.load_by_name("default")
    ctx = guest.init_execution_context(graph.value or 0)
    assert set_audio(guest, ctx.value or 0, wav) == INVALID_ARGUMENT


def test_stereo_is_accepted(guest: TrampolineGuest, files: Path, native: Native) -> None:
    stereo = files / "stereo.wav"
    stereo.write_bytes(wav_bytes(1.0, channels=2))
    graph = guest.load_by_name("default")
    assert transcribe(guest, graph.value or 0, stereo.read_bytes()) == native.transcribe(stereo)


@pytest.mark.parametrize("dims", [(len(b"x"),), (2, 1), (1, 1, 1)])
def test_dims_other_than_1_by_n_are_refused(guest: TrampolineGuest, audio: Path, dims: tuple[int, ...]) -> None:
    graph = guest.load_by_name("default")
    ctx = guest.init_execution_context(graph.value or 0)
    data = audio.read_bytes()
    assert set_audio(guest, ctx.value or 0, data, dims=dims, type_number=U8) == INVALID_ARGUMENT


@pytest.mark.parametrize("metadata, errno", [
    (b"{not json", INVALID_ENCODING), (b"[1]", INVALID_ARGUMENT), (b'{"translate": "yes"}', INVALID_ARGUMENT),
    (b'{"threads": -1}', INVALID_ARGUMENT), (b'{"threads": 1.5}', INVALID_ARGUMENT),
    (b'{"language": "zz"}', INVALID_ARGUMENT), (b'{"beam-size": 9}', INVALID_ARGUMENT),
    (b'{"best-of": 1000000}', INVALID_ARGUMENT), (b'{"offset-t": 4294967296}', INVALID_ARGUMENT),
])
def test_bad_options_errno(guest: TrampolineGuest, metadata: bytes, errno: int) -> None:
    graph = guest.load_by_name("default")
    ctx = guest.init_execution_context(graph.value or 0)
    assert guest.call("set_input", ctx.value or 0, 1, guest.tensor_record(metadata, (len(metadata),), U8)) == errno


def test_unknown_and_file_keys_are_logged_and_write_nothing(guest: TrampolineGuest, audio: Path, tmp_path: Path,
                                                            caplog: pytest.LogCaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.WARNING, "wasinn")
    graph = guest.load_by_name("default")
    text = transcribe(guest, graph.value or 0, audio.read_bytes(),
                      {"no-such-key": 1, "output-srt": True, "output-json": True, "output-file": str(tmp_path / "x"),
                       "beam-size": 1, "no-timestamps": True})
    assert isinstance(text, bytes)
    assert "no-such-key" in caplog.text and "output-srt" in caplog.text
    assert list(tmp_path.iterdir()) == []


def test_audio_ctx_beyond_the_model_is_refused(guest: TrampolineGuest, audio: Path) -> None:
    graph = guest.load_by_name("default")
    ctx = guest.init_execution_context(graph.value or 0)
    raw = json.dumps({"audio-ctx": 1501}).encode()
    assert guest.call("set_input", ctx.value or 0, 1, guest.tensor_record(raw, (len(raw),), U8)) == 0
    assert set_audio(guest, ctx.value or 0, audio.read_bytes()) == 0
    assert guest.compute(ctx.value or 0).errno == INVALID_ARGUMENT


def test_compute_without_audio_is_invalid_argument(guest: TrampolineGuest) -> None:
    graph = guest.load_by_name("default")
    ctx = guest.init_execution_context(graph.value or 0)
    assert guest.compute(ctx.value or 0).errno == INVALID_ARGUMENT


def test_multilingual_model_loads(guest: TrampolineGuest) -> None:
    data = model_bytes(TinyWhisper(n_vocab=51865, seed=3))
    graph = guest.load([data], encoding=WHISPER)
    assert graph.ok
    ctx = guest.init_execution_context(graph.value or 0)
    raw = json.dumps({"language": "de", "translate": True, "beam-size": 1}).encode()
    assert guest.call("set_input", ctx.value or 0, 1, guest.tensor_record(raw, (len(raw),), U8)) == 0


def test_output_is_empty_before_compute(guest: TrampolineGuest) -> None:
    graph = guest.load_by_name("default")
    ctx = guest.init_execution_context(graph.value or 0)
    call, text = guest.get_output_bytes(ctx.value or 0, 0)
    assert call.ok and text == b""
    assert np.frombuffer(text, np.uint8).size == 0
