"""The config keys: defaults, checks and the properties they become."""

from __future__ import annotations

from pathlib import Path

import pytest

from wasinn import ErrorCode, WasiNnError
from wasinn_backend_openvino.config import CACHE_ENV, Settings, compile_properties, default_cache_dir, parse_settings

CPU_PROPERTIES = frozenset({"INFERENCE_PRECISION_HINT", "PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS"})


def test_defaults_are_f32_latency_one_stream() -> None:
    settings = parse_settings({}, named=False)
    assert settings == Settings()
    assert compile_properties(settings, CPU_PROPERTIES) == {
        "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}


def test_every_key() -> None:
    settings = parse_settings({"device": "auto", "precision": "BF16", "num_threads": 3,
                               "performance_hint": "throughput", "num_streams": 2, "cache_dir": "/tmp/x",
                               "properties": {"ENABLE_CPU_PINNING": False, "DEVICE_PROPERTIES": {"CPU": {"A": 1}}}},
                              named=False)
    assert settings.device == "AUTO" and settings.cache_dir == Path("/tmp/x")
    assert compile_properties(settings, None) == {
        "INFERENCE_PRECISION_HINT": "bf16", "PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": "2",
        "INFERENCE_NUM_THREADS": 3, "ENABLE_CPU_PINNING": False, "DEVICE_PROPERTIES": {"CPU": {"A": 1}}}


@pytest.mark.parametrize("config", [
    {"precision": "f16"}, {"INFERENCE_PRECISION_HINT": "fp16"}, {"properties": {"INFERENCE_PRECISION_HINT": "float16"}},
    {"precision": "f16", "INFERENCE_PRECISION_HINT": "f16"},
])
def test_precision_three_ways(config: dict[str, object]) -> None:
    settings = parse_settings(config, named=False)
    assert settings.precision == "f16" and settings.precision_explicit
    assert compile_properties(settings, CPU_PROPERTIES)["INFERENCE_PRECISION_HINT"] == "f16"


def test_throughput_hint_gets_no_single_stream_default() -> None:
    properties = compile_properties(parse_settings({"performance_hint": "THROUGHPUT"}, named=False), CPU_PROPERTIES)
    assert "NUM_STREAMS" not in properties
    raw = parse_settings({"properties": {"PERFORMANCE_HINT": "THROUGHPUT"}}, named=False)
    assert "NUM_STREAMS" not in compile_properties(raw, CPU_PROPERTIES)
    assert compile_properties(parse_settings({"num_streams": "auto"}, named=False), CPU_PROPERTIES)["NUM_STREAMS"] \
        == "AUTO"


def test_defaults_skip_properties_a_device_does_not_know() -> None:
    assert compile_properties(Settings(), frozenset({"PERFORMANCE_HINT"})) == {"PERFORMANCE_HINT": "LATENCY"}
    # What the user asked for is sent anyway, for OpenVINO to refuse.
    asked = parse_settings({"precision": "f32", "num_threads": 2}, named=False)
    assert compile_properties(asked, frozenset()) == {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 2}


@pytest.mark.parametrize(("config", "words"), [
    ({"colour": "blue"}, "unknown key(s) colour"),
    ({"precision": "int4"}, "precision must be one of"),
    ({"precision": "f32", "INFERENCE_PRECISION_HINT": "bf16"}, "conflicting precisions"),
    ({"num_threads": 0}, "num_threads must be a positive integer"),
    ({"num_threads": True}, "num_threads must be a positive integer"),
    ({"num_streams": "many"}, "num_streams must be a positive integer"),
    ({"performance_hint": "FAST"}, "performance_hint must be one of"),
    ({"device": ""}, "device must be an OpenVINO device name"),
    ({"device": 1}, "device must be an OpenVINO device name"),
    ({"cache_dir": 5}, "cache_dir must be a path"),
    ({"properties": []}, "properties must be an object"),
    ({"properties": {"CACHE_DIR": "/tmp"}}, "with the 'cache_dir' key"),
    ({"properties": {"X": [1, 2]}}, "properties.X must be"),
])
def test_bad_config_is_invalid_argument(config: dict[str, object], words: str) -> None:
    with pytest.raises(WasiNnError) as caught:
        parse_settings(config, named=False)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert words in str(caught.value)


def test_cache_dir_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "wasinn" / "openvino"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "wasinn" / "openvino"
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    # Named models cache by default; anonymous ones (bytes from a guest) only when asked.
    assert parse_settings({}, named=True).cache_dir == tmp_path / "mine"
    assert parse_settings({}, named=False).cache_dir is None
    assert parse_settings({"cache_dir": str(tmp_path / "c")}, named=False).cache_dir == tmp_path / "c"
    assert parse_settings({"cache_dir": None}, named=True).cache_dir is None
    assert parse_settings({"cache_dir": ""}, named=True).cache_dir is None
    monkeypatch.setenv(CACHE_ENV, "")
    assert parse_settings({}, named=True).cache_dir is None
