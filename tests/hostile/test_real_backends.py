"""Hostile-guest properties with the real runtimes (integration env: every backend installed).

* Leaks: store -> load (guest bytes, or the shared named graph) -> infer -> close, over and over:
  RSS stays flat and the stores' tables end empty (``WASINN_SOAK=1``: 10x the cycles).
* Concurrency: threads with a store each share one named graph; every output equals the
  single-threaded one.
* No guest-chosen host paths: a guest's ``load_by_name_with_config`` cannot point a runtime at a
  cache directory or a library of its choosing, and a model's file path is not a model name.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import wasmtime

import wasinn
from wasinn.testing.guest import TrampolineGuest

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo"
FILES = {
    "onnx": [DEMO / "models" / "digits.onnx"],
    "openvino": [DEMO / "models" / "digits.xml", DEMO / "models" / "digits.bin"],
    "tflite": [DEMO / "models" / "digits.tflite"],
}
BACKENDS = list(FILES)
SOAK = os.environ.get("WASINN_SOAK") == "1"
CYCLES = {"onnx": 200, "openvino": 60, "tflite": 200}
THREADS = 4


def images(count: int) -> list[np.ndarray]:
    """Demo digits as the models want them: f32[1, 64], pixel / 16."""
    out = []
    for path in sorted((DEMO / "images").glob("*.pgm"))[:count]:
        pixels = path.read_bytes()[-64:]
        out.append((np.frombuffer(pixels, np.uint8).astype(np.float32) / 16.0).reshape(1, 64))
    return out


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.fixture
def host(request: pytest.FixtureRequest) -> Iterator[wasinn.WasiNnHost]:
    backend = request.param
    with wasinn.WasiNnHost(allow=[backend], backend=backend) as h:
        found = {b.name: b for b in h.backends}.get(backend)
        assert found is not None and found.available, f"backend {backend} is not installed: this env needs it"
        h.register_model("digits", FILES[backend])
        logging.getLogger("wasinn").setLevel(logging.ERROR)
        yield h
        logging.getLogger("wasinn").setLevel(logging.NOTSET)


class Guests:
    """Guests on one engine and linker (as an embedder serving many requests would have)."""

    def __init__(self, host: wasinn.WasiNnHost) -> None:
        self.host = host
        self.engine = wasmtime.Engine()

    def new(self) -> TrampolineGuest:
        return TrampolineGuest(self.host, self.engine)


def classify(guest: TrampolineGuest, graph: int, image: np.ndarray) -> np.ndarray:
    context = guest.init_execution_context(graph)
    assert context.ok and context.value is not None, context
    assert guest.set_input(context.value, 0, image).ok
    assert guest.compute(context.value).ok
    call, probabilities = guest.get_output(context.value, 0, np.float32, (1, 10))
    assert call.ok and probabilities is not None, call
    assert guest.finalize_execution_context(context.value).ok
    guest.reset_heap()
    return probabilities


@pytest.mark.parametrize("host", BACKENDS, indirect=True)
def test_store_cycles_with_a_real_runtime_leak_nothing(host: wasinn.WasiNnHost) -> None:
    backend = host.forced_backend
    assert backend is not None
    guests = Guests(host)
    model = [path.read_bytes() for path in FILES[backend]]
    image = images(1)[0]
    cycles = CYCLES[backend] * (10 if SOAK else 1)

    def cycle(i: int) -> None:
        guest = guests.new()
        state = guest.state
        loaded = guest.load(model) if i % 2 else guest.load_by_name("digits")
        assert loaded.ok and loaded.value is not None, loaded
        probabilities = classify(guest, loaded.value, image)
        assert abs(float(probabilities.sum()) - 1.0) < 1e-4
        if i % 3 == 0:
            guest.init_execution_context(loaded.value)  # left for store.close() to release
        else:
            assert guest.unload(loaded.value).ok
            assert (state.graph_count, state.context_count) == (0, 0)
        del state
        guest.close()

    for i in range(max(cycles // 5, 10)):  # warm-up: allocator arenas, runtime caches
        cycle(i)
    gc.collect()
    start = rss_bytes()
    for i in range(cycles):
        cycle(i)
    gc.collect()
    drift = (rss_bytes() - start) / 1e6
    print(f"{backend}: {cycles} cycles, RSS drift {drift:.2f} MB")
    assert drift < 10, f"{backend}: RSS grew by {drift:.1f} MB over {cycles} store cycles"


@pytest.mark.parametrize("host", BACKENDS, indirect=True)
def test_threads_share_a_named_real_graph_and_agree_with_one_thread(host: wasinn.WasiNnHost) -> None:
    guests = Guests(host)
    inputs = images(64)
    reference_guest = guests.new()
    graph = reference_guest.load_by_name("digits").value
    assert graph is not None
    reference = [classify(reference_guest, graph, image) for image in inputs]
    reference_guest.close()
    per_thread = 100 * (10 if SOAK else 1)
    wrong: list[tuple[int, int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(THREADS)

    def work(thread: int) -> None:
        try:
            guest = guests.new()
            handle = guest.load_by_name("digits").value
            assert handle is not None
            barrier.wait()
            for i in range(per_thread):
                k = (thread * 7 + i) % len(inputs)
                if not np.allclose(classify(guest, handle, inputs[k]), reference[k], rtol=0, atol=1e-6):
                    wrong.append((thread, i))
            guest.close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[0]
    assert not wrong, f"{len(wrong)} of {THREADS * per_thread} outputs differ from the single-threaded ones"


# A guest config naming a host path (or a library) for each runtime; {path} is a fresh directory.
# ONNX Runtime's provider options carry paths for some providers (TensorRT's trt_engine_cache_path,
# the OpenVINO EP's cache_dir, ...): a guest must not be able to set them at all.
PATH_CONFIGS = {
    "openvino": [{"cache_dir": "{path}"}, {"properties": {"CACHE_DIR": "{path}"}}],
    "tflite": [{"delegate": "{path}/libevil_delegate.so"}],
    "onnx": [{"providers": ["openvino", "cpu"], "provider_options": {"openvino": {"cache_dir": "{path}"}}},
             {"provider_options": {"cpu": {"optimized_model_filepath": "{path}/model.ort"}}}],
}


@pytest.mark.parametrize("host", BACKENDS, indirect=True)
def test_a_guest_config_cannot_choose_host_paths(host: wasinn.WasiNnHost, tmp_path: Path) -> None:
    backend = host.forced_backend
    assert backend is not None
    target = tmp_path / "guest-chosen"
    target.mkdir()
    (target / "libevil_delegate.so").write_bytes(b"\x7fELF not really")
    guest = Guests(host).new()
    for config in PATH_CONFIGS[backend]:
        text = json.dumps(config).replace("{path}", str(target))
        loaded = guest.load_by_name("digits", text)
        assert loaded.errno in (1, 6), f"{backend} accepted the guest config {text} (errno {loaded.errno})"
        assert sorted(p.name for p in target.iterdir()) == ["libevil_delegate.so"], \
            f"{backend} wrote into the guest's directory: {sorted(target.iterdir())}"
    assert guest.load_by_name("digits", "{}").ok  # the control: a harmless config works
    guest.close()


@pytest.mark.parametrize("host", BACKENDS, indirect=True)
def test_a_model_files_path_is_not_a_model_name(host: wasinn.WasiNnHost) -> None:
    backend = host.forced_backend
    assert backend is not None
    guest = Guests(host).new()
    for path in FILES[backend]:
        for name in (str(path), path.name, f"../{path.parent.name}/{path.name}", f"./{path.name}"):
            assert guest.load_by_name(name).errno == 8, name
    assert guest.load_by_name("digits").ok
    guest.close()


def onnx_with_external_data(location: str, length: int) -> bytes:
    """Y = X + W, where W's 16 bytes live in the file ``location`` (ONNX "external data")."""
    from onnx import TensorProto, helper

    weights = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[length // 4],
                          data_location=TensorProto.EXTERNAL)
    for key, value in (("location", location), ("offset", "0"), ("length", str(length))):
        entry = weights.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph([helper.make_node("Add", ["X", "W"], ["Y"])], "g",
                              [helper.make_tensor_value_info("X", TensorProto.FLOAT, [length // 4])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [length // 4])],
                              initializer=[weights])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)
    return model.SerializeToString()


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_a_guests_onnx_model_cannot_read_host_files_through_external_data(
        backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ONNX initializers may live in other files ("external data", by path). A guest's model must not
    make the host read a file of the guest's choosing and hand its bytes back as an output."""
    secret = b"host secret: 0123456789abcdef"[:16]
    (tmp_path / "secret.bin").write_bytes(secret)
    monkeypatch.chdir(tmp_path)
    with wasinn.WasiNnHost(allow=[backend], backend=backend) as host:
        guest = TrampolineGuest(host)
        for location in (str(tmp_path / "secret.bin"), "secret.bin", f"../{tmp_path.name}/secret.bin"):
            loaded = guest.load([onnx_with_external_data(location, len(secret))], "onnx")
            leaked = b""
            if loaded.ok and loaded.value is not None:
                out = guest.infer(loaded.value, [np.zeros(len(secret) // 4, np.float32)],
                                  [(np.float32, (len(secret) // 4,))])
                leaked = out[0].tobytes()
            assert leaked != secret, f"{backend}: a guest read {location} through ONNX external data"
            assert loaded.errno == 1, f"{backend}: external data at {location} was not refused ({loaded})"
        guest.close()


@pytest.mark.parametrize("host", BACKENDS, indirect=True)
def test_inputs_are_copied_when_set(host: wasinn.WasiNnHost) -> None:
    """``Tensor.data`` is a view of guest memory valid only during set_input: a backend that kept it
    would compute on whatever the guest writes there afterwards."""
    guest = Guests(host).new()
    graph = guest.load_by_name("digits").value
    assert graph is not None
    image = images(1)[0]
    reference = classify(guest, graph, image)
    context = guest.init_execution_context(graph).value
    assert context is not None and guest.set_input(context, 0, image).ok
    heap = 65536
    guest.memory.write(guest.store, b"\xff" * (guest.memory_size - heap), heap)  # NaNs over every input byte
    assert guest.compute(context).ok
    call, probabilities = guest.get_output(context, 0, np.float32, (1, 10))
    assert call.ok and probabilities is not None
    assert np.allclose(probabilities, reference, atol=1e-6), "the backend read the input after set_input returned"
    guest.close()
