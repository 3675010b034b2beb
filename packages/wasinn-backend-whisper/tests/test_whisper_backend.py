"""The backend through the wasi-nn ABI (a real wasm guest calling each import, the default ranking),
its text compared byte for byte with whisper.cpp called natively with WasmEdge's options."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from wasinn_backend_whisper import options
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


def set_metadata(guest: TrampolineGuest, ctx: int, metadata: dict[str, object]) -> int:
    raw = json.dumps(metadata).encode()
    return guest.call("set_input", ctx, 1, guest.tensor_record(raw, (len(raw),), U8))


def test_processors_2_is_whisper_full_parallel_as_native(guest: TrampolineGuest, files: Path, native: Native,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    # WasmEdge's compute is whisper_full_parallel(processors): the audio cut in two, each half decoded
    # in its own whisper.cpp state, the segments joined with shifted times. Four cores "here" so that
    # 2 processors are not cut on a smaller machine.
    monkeypatch.setattr(options, "cores", lambda: 4)
    four = files / "four-seconds.wav"
    four.write_bytes(wav_bytes(4.0, seed=4))
    graph = guest.load_by_name("default")
    settings: dict[str, object] = {"processors": 2, "threads": 1, "beam-size": 1}
    text = transcribe(guest, graph.value or 0, four.read_bytes(), settings)
    assert text == native.transcribe(four, processors=2, threads=1, beam_size=1)
    assert text != native.transcribe(four, processors=1, threads=1, beam_size=1)  # not whisper_full's text
    # and processors 1 is whisper_full's, as in WasmEdge
    assert transcribe(guest, graph.value or 0, four.read_bytes(), {**settings, "processors": 1}) \
        == native.transcribe(four, threads=1, beam_size=1)


def test_processors_beyond_the_cores_are_cut_and_logged(guest: TrampolineGuest, files: Path, native: Native,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(options, "cores", lambda: 2)
    four = files / "four-seconds.wav"
    four.write_bytes(wav_bytes(4.0, seed=4))
    graph = guest.load_by_name("default")
    text = transcribe(guest, graph.value or 0, four.read_bytes(), {"processors": 4096, "threads": 1, "beam-size": 1})
    assert text == native.transcribe(four, processors=2, threads=1, beam_size=1)
    assert "processors 4096 asked for; 2 core(s) here: using 1 / 2" in caplog.text


def test_parallel_states_are_held_on_the_context_budget(tiny: Path, files: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    # Each extra processor is a whole whisper.cpp decoding state (its caches and compute buffers, ~26 MB
    # for the tiny test model, ~0.5 GB for large): counted before whisper_full_parallel makes it.
    monkeypatch.setattr(options, "cores", lambda: 4)
    four = files / "four-seconds.wav"
    four.write_bytes(wav_bytes(4.0, seed=4))
    limits = wasinn.Limits(max_runtime_bytes_per_context=8 << 20)
    with wasinn.WasiNnHost(limits=limits) as host:
        host.register_model("default", tiny)
        guest = TrampolineGuest(host)
        graph = guest.load_by_name("default").value or 0
        ctx = guest.init_execution_context(graph).value or 0
        profile = guest.state.profile
        assert profile is not None
        assert set_metadata(guest, ctx, {"processors": 2, "threads": 1, "beam-size": 1}) == 0
        assert set_audio(guest, ctx, four.read_bytes()) == 0  # the audio itself fits (0.5 MB)
        assert guest.compute(ctx).errno == profile.errno(wasinn.ErrorCode.TOO_LARGE)
        assert set_metadata(guest, ctx, {"processors": 1, "threads": 1, "beam-size": 1}) == 0
        assert set_audio(guest, ctx, four.read_bytes()) == 0
        assert guest.compute(ctx).ok  # nothing of the refused call is still held
        guest.close()


def stereo_speaker_1(seconds: float) -> bytes:
    """A stereo WAV whose right channel is twice as loud as its left (WasmEdge's guess: speaker 1)."""
    return wav_bytes(seconds, channels=2, seed=6)


@pytest.mark.parametrize("settings", [{}, {"no-timestamps": True}], ids=["timestamps", "no-timestamps"])
def test_diarize_stereo_labels_speakers_as_native(guest: TrampolineGuest, files: Path, native: Native,
                                                  settings: dict[str, object]) -> None:
    stereo = files / "stereo-speakers.wav"
    stereo.write_bytes(stereo_speaker_1(2.0))
    graph = guest.load_by_name("default")
    metadata = {"diarize": True, "threads": 1, "beam-size": 1, **settings}
    text = transcribe(guest, graph.value or 0, stereo.read_bytes(), metadata)
    assert text == native.transcribe(stereo, diarize=True, threads=1, beam_size=1,
                                     no_timestamps=bool(settings.get("no-timestamps")))
    lines = text.splitlines()
    assert lines and text.endswith(b"\n")
    # With timestamps each segment's channels are compared (the right one is louder); without, the
    # segment is [0, 0): no samples, "?", as in WasmEdge.
    label = b"(speaker ?)" if settings else b"(speaker 1)"
    assert all(label in line for line in lines), text


def test_diarize_needs_stereo_and_the_option_before_the_audio(guest: TrampolineGuest, files: Path,
                                                              audio: Path, native: Native) -> None:
    stereo = files / "stereo-speakers.wav"
    stereo.write_bytes(stereo_speaker_1(2.0))
    graph = guest.load_by_name("default").value or 0
    # Mono: no channels to compare, no label (WasmEdge would read past its samples here).
    mono = transcribe(guest, graph, audio.read_bytes(), {"diarize": True, "threads": 1, "beam-size": 1})
    assert b"(speaker" not in mono
    assert mono == native.transcribe(audio, diarize=True, threads=1, beam_size=1)
    # Stereo, diarize set after the audio: WasmEdge keeps the channels only when diarize is on at
    # set_input, so no label either.
    ctx = guest.init_execution_context(graph).value or 0
    assert set_audio(guest, ctx, stereo.read_bytes()) == 0
    assert set_metadata(guest, ctx, {"diarize": True, "threads": 1, "beam-size": 1}) == 0
    assert guest.compute(ctx).ok
    assert b"(speaker" not in guest.get_output_bytes(ctx, 0)[1]


def test_temperature_inc_is_the_embedders_setting(guest: TrampolineGuest, tiny: Path, audio: Path, native: Native,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    # No fallback (step 0): the embedder may turn it off for a named model; a guest may not.
    greedy = {"beam-size": 1, "threads": 1}
    no_fallback = native.transcribe(audio, beam_size=1, threads=1, temperature_inc=0.0)
    fallback = native.transcribe(audio, beam_size=1, threads=1)
    assert no_fallback != fallback  # the random model's decoder does fall back on this audio
    guest.host.register_model("no-fallback", tiny, config={"temperature-inc": 0.0, **greedy})
    graph = guest.load_by_name("no-fallback").value or 0
    assert transcribe(guest, graph, audio.read_bytes()) == no_fallback
    # From a guest (input 1, or load_by_name_with_config): logged and ignored, as WasmEdge ignores it.
    caplog.set_level(logging.WARNING, "wasinn")
    assert transcribe(guest, graph, audio.read_bytes(), {"temperature-inc": 0.2, **greedy}) == no_fallback
    assert "temperature-inc is the embedder's setting, not a guest's: ignored" in caplog.text
    default = guest.load_by_name("default", json.dumps({"temperature-inc": 0.0})).value or 0
    assert transcribe(guest, default, audio.read_bytes(), {"temperature-inc": 0.0, **greedy}) == fallback


@pytest.mark.parametrize("value", [2, -0.1, "0", True, None])
def test_temperature_inc_out_of_range_is_refused(guest: TrampolineGuest, tiny: Path, value: object) -> None:
    guest.host.register_model("bad-step", tiny, config={"temperature-inc": value})
    assert guest.load_by_name("bad-step").errno == INVALID_ARGUMENT
