"""OpenVINO's model cache: populated by one process, reused by the next (timings are in the docs)."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ov_helpers import DIGITS_MODELS, compiled_of, load_named, new_host, run_graph

from wasinn import ExecutionTarget, GraphEncoding, hardware

# One process: register the digits model in each format, load them, and report for each whether
# OpenVINO imported it from the cache.
LOAD_ONCE = """
import json, sys
import wasinn
with wasinn.WasiNnHost(backend="openvino") as host:
    found = {}
    for name, paths in json.loads(sys.argv[1]).items():
        host.register_model(name, paths)
        state = host.new_state()
        compiled = state.graph(state.load_by_name(name)).graph.state.compiled
        found[name] = bool(compiled.get_property("LOADED_FROM_CACHE"))
    print(json.dumps(found))
"""
MODELS = {"ir": ["digits.xml", "digits.bin"], "onnx": ["digits.onnx"], "tflite": ["digits.tflite"]}


def load_in_new_process() -> dict[str, bool]:
    models = {name: [str(DIGITS_MODELS / f) for f in files] for name, files in MODELS.items()}
    result = subprocess.run([sys.executable, "-c", LOAD_ONCE, json.dumps(models)], capture_output=True, text=True,
                            check=True, timeout=120)
    found: dict[str, bool] = json.loads(result.stdout.strip().splitlines()[-1])
    return found


def test_second_process_loads_from_the_cache(private_cache: Path) -> None:
    assert not private_cache.exists()
    assert load_in_new_process() == {"ir": False, "onnx": False, "tflite": False}
    blobs = sorted(private_cache.glob("*.blob"))
    assert len(blobs) == 3
    assert load_in_new_process() == {"ir": True, "onnx": True, "tflite": True}
    assert sorted(private_cache.glob("*.blob")) == blobs  # reused, not compiled again
    # ONNX and TFLite are compiled from a copy named by their SHA-256, so a hit skips reading them.
    copies = sorted((private_cache / "models").iterdir())
    assert sorted(p.suffix for p in copies) == [".onnx", ".tflite"]
    for copy in copies:
        original = DIGITS_MODELS / f"digits{copy.suffix}"
        assert copy.read_bytes() == original.read_bytes()
        assert copy.stem == hashlib.sha256(original.read_bytes()).hexdigest()


def test_cache_is_keyed_by_content_and_precision_applies_on_import(private_cache: Path) -> None:
    ir = [(DIGITS_MODELS / "digits.xml").read_bytes(), (DIGITS_MODELS / "digits.bin").read_bytes()]
    changed = bytearray(ir[1])
    changed[100] ^= 1
    x = np.linspace(0, 1, 64, dtype=np.float32).reshape(1, 64)
    with new_host() as host:
        hits = {}
        for name, builders, config in (("a", ir, {}), ("b", [ir[0], bytes(changed)], {}),
                                       ("bf16", ir, {"precision": "bf16"}),
                                       ("fresh-bf16", ir, {"precision": "bf16", "cache_dir": None})):
            state, graph = load_named(host, name, builders, config)
            compiled = compiled_of(state, graph)
            hits[name] = compiled.get_property("LOADED_FROM_CACHE")
            hits[f"{name} output"] = run_graph(state, graph, [x])[0]
    assert (hits["a"], hits["b"]) == (False, False)  # other weights, another blob
    # The CPU plugin's blob holds the model before precision is chosen (its only caching property is
    # the device name), so bf16 reuses the f32 blob and applies bf16 when it imports it.
    assert hits["bf16"] is True
    np.testing.assert_array_equal(hits["bf16 output"], hits["fresh-bf16 output"])
    if hardware.probe().cpu.has("avx512f"):  # where OpenVINO runs bf16 at all
        assert not np.array_equal(hits["bf16 output"], hits["a output"])
    assert len(list(private_cache.glob("*.blob"))) == 2


def test_cache_off_and_anonymous_models(private_cache: Path, tmp_path: Path) -> None:
    ir = [(DIGITS_MODELS / "digits.xml").read_bytes(), (DIGITS_MODELS / "digits.bin").read_bytes()]
    with new_host() as host:
        load_named(host, "off", ir, {"cache_dir": None})
        load_named(host, "empty", ir, {"cache_dir": ""})
        host.new_state().load(ir, GraphEncoding.OPENVINO, ExecutionTarget.CPU)  # a guest's bytes: no cache
        assert not private_cache.exists()
        chosen = tmp_path / "chosen"
        onnx_model = (DIGITS_MODELS / "digits.onnx").read_bytes()
        load_named(host, "chosen", onnx_model, {"cache_dir": str(chosen)})
    assert len(list(chosen.glob("*.blob"))) == 1


def test_a_broken_cache_dir_only_costs_the_cache(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_bytes(b"")
    with new_host() as host, caplog.at_level(logging.WARNING, logger="wasinn.openvino"):
        state, graph = load_named(host, "m", DIGITS_MODELS / "digits.tflite", {"cache_dir": str(not_a_dir)})
        (y,) = run_graph(state, graph, [np.zeros((1, 64), np.float32)])
    assert y.shape == (1, 10)
    assert "compiled without it" in caplog.text


def test_bad_model_leaves_no_copy_in_the_cache(private_cache: Path) -> None:
    tflite = (DIGITS_MODELS / "digits.tflite").read_bytes()
    broken = tflite[:8] + bytes(np.random.default_rng(4).integers(0, 256, 3000, np.uint8))
    with new_host() as host, pytest.raises(Exception, match="corrupted or malformed"):
        load_named(host, "broken", broken)
    assert not list((private_cache / "models").iterdir())
    assert not list(private_cache.glob("*.blob"))
