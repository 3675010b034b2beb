"""A guest's TFLite model, with every backend that reads TFLite installed: refused, bounded, and forgotten.

Issue 26, rows 6, 7 and 11, through the default ranking (a ``WasiNnHost()`` that found onnx, openvino
and tflite by entry point, and a real wasm guest calling ``load``):

* row 6: a file the tflite verifier refuses is ``invalid_argument`` and reaches no other backend
  (before, the ranking handed it to OpenVINO, which loaded and ran some); with tflite denied by the
  embedder, OpenVINO gets every TFLite file but never reads a guest's in the host process (by
  default the guest's model is in an isolated worker, which reads it; with ``Limits(guest_models=
  "in-process")`` a child reads it and hands back OpenVINO IR);
* row 7: a store that loaded malformed files is freed once the embedder closes it (the tflite verify
  cache kept an exception whose traceback held the store);
* row 11: degenerate graphs (no operators, no outputs, outputs or operator inputs nothing writes,
  subgraphs calling each other in a loop, external weights) are refused at load.

Each route runs in a child process (a native crash would be a failed test, not a dead pytest), with
its own empty TMPDIR, which must stay empty; it reports every errno, which backend loaded what, what
its OpenVINO ``Core.read_model`` was given, its peak RSS (and its children's: probes, templates and
their workers) and whether the closed store was freed. A
model naming a host file as its external weights must leave that file unread (its atime stays 0).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TFLITE_DATA = ROOT / "packages" / "wasinn-backend-tflite" / "tests" / "data"
sys.path[:0] = [str(HERE), str(TFLITE_DATA)]

from broken_models import variant  # noqa: E402

BACKENDS = ("onnx", "openvino", "tflite")
ROUTES: dict[str, dict[str, Any]] = {
    "default": {},  # every backend installed, nothing forced
    "deny=tflite": {"deny": ["tflite"]},  # the embedder denied tflite: OpenVINO reads TFLite
    "allow=openvino": {"allow": ["openvino"]},  # only OpenVINO
    # The same, with the guest's models in the host process (not the default): OpenVINO's child reads them.
    "deny=tflite,in-process": {"deny": ["tflite"], "guest_models": "in-process"},
}
ERRNO = {"success": 0, "invalid_argument": 1, "invalid_encoding": 2, "runtime_error": 5, "unsupported_operation": 6,
         "too_large": 7}
WASI_NN_ERRNOS = set(range(1, 9))
# Peak RSS of a worker that loads every payload below (the host process: Python, wasmtime, three
# runtimes): about 200 MB. A payload that made a runtime allocate for a guest-chosen shape would blow it.
MAX_RSS_MB = 600
WORKER_TIMEOUT_S = 600

# Variants of broken_models.py that tflite's verifier refuses and that the old ranking handed to
# OpenVINO, which loaded and ran them (11 of the 245 CI variants).
REACHED_OPENVINO = [
    "wamr/average.tflite|0|overwrite|3", "wamr/average.tflite|0|zero-run|0", "wamr/max.tflite|0|overwrite|0",
    "wamr/mult_dim.tflite|0|overwrite|2", "wamr/mult_dim.tflite|0|zero-run|2", "wamr/mult_out.tflite|0|flip|9",
    "wamr/quantized_model.tflite|0|flip|0", "wamr/quantized_model.tflite|0|flip|2",
    "wamr/quantized_model.tflite|0|flip|4", "wamr/quantized_model.tflite|0|flip|9", "wamr/sum.tflite|0|overwrite|1",
]
DEGENERATE = ("no_operators", "no_operators_identity", "no_operators_constant", "no_outputs", "unwritten_output",
              "uninitialized_read", "read_before_write", "unwritten_subgraph_output", "no_subgraphs",
              "call_once_cycle", "while_calls_itself", "external_buffer")


def _u32(data: bytes, position: int, value: int) -> bytes:
    return data[:position] + value.to_bytes(4, "little") + data[position + 4:]


def payloads(marker: str) -> dict[str, Callable[[], bytes]]:
    """Every hostile TFLite file, by name; made here (make_models.py writes the degenerate graphs).
    ``marker`` is the host file the external-weights model names."""
    import make_models

    digits = (ROOT / "demo" / "models" / "digits.tflite").read_bytes()
    found: dict[str, Callable[[], bytes]] = {
        "truncated-64": lambda: digits[:64],
        "truncated-half": lambda: digits[:len(digits) // 2],
        "root-offset-outside": lambda: _u32(digits, 0, 0xFFFFFF00),
        "root-offset-at-the-end": lambda: _u32(digits, 0, len(digits) - 4),
        "zeroed-body": lambda: digits[:8] + bytes(len(digits) - 8),
        "split-without-options": make_models.no_split_options,
        "batch-matmul-one-input": make_models.one_input_batch_matmul,
        "external-weights-naming-a-host-file": lambda: _external(make_models, marker),
    }
    for variant_id in REACHED_OPENVINO:
        found[f"reached-openvino:{variant_id}"] = lambda v=variant_id: variant("tflite", v)[0]  # type: ignore[misc]
    for kind in DEGENERATE:
        found[f"degenerate:{kind}"] = lambda k=kind: make_models.degenerate(k)  # type: ignore[misc]
    return found


def _external(make_models: Any, marker: str) -> bytes:
    data = make_models.degenerate("external_buffer")
    default = b"/etc/hostname"
    assert len(marker.encode()) <= 255 and data.count(default) == 1
    # Rebuild with the marker's path (flatbuffers store the string's length: rebuild, not patch).
    S = make_models.S
    model = S.ModelT.InitFromPackedBuf(data, 0)
    model.externalBufferGroups[0].name = marker
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


# ---- the worker (a child process per route) ------------------------------------------------------
def worker(route: str, marker: str) -> dict[str, Any]:
    import gc
    import logging
    import resource
    import weakref

    import numpy as np
    import openvino as ov

    import wasinn
    from wasinn.testing.guest import TENSOR_TYPE, TrampolineGuest

    logging.getLogger("wasinn").setLevel(logging.CRITICAL)
    host_reads: list[str] = []
    real_read = ov.Core.read_model

    def spy(self: Any, model: Any, *args: Any, **kwargs: Any) -> Any:  # what this process's OpenVINO reads
        host_reads.append(model if isinstance(model, str) else type(model).__name__)
        return real_read(self, model, *args, **kwargs)

    ov.Core.read_model = spy  # type: ignore[method-assign]

    options = dict(ROUTES[route])
    if "guest_models" in options:
        options["limits"] = wasinn.Limits(guest_models=options.pop("guest_models"))
    host = wasinn.WasiNnHost(**options)
    report: dict[str, Any] = {"backends": sorted(b.name for b in host.backends if b.available), "results": {}}
    guest = TrampolineGuest(host)
    good = guest.load([(ROOT / "demo" / "models" / "digits.tflite").read_bytes()], "autodetect")
    assert good.ok and good.value is not None
    context = guest.init_execution_context(good.value)
    # The backend's own state of a live graph (tflite's GraphState, OpenVINO's CompiledGraph).
    graph_state = weakref.ref(guest.state.graph(good.value).graph.state)
    for name, make in payloads(marker).items():
        steps: dict[str, Any] = {}
        # Both spellings of the encoding where it is cheap; OpenVINO starts a child process per load.
        for encoding in ("autodetect", "tensorflowlite") if route == "default" else ("autodetect",):
            loaded = guest.load([make()], encoding)
            steps[f"load-{encoding}"] = loaded.errno
            if loaded.ok and loaded.value is not None:
                steps["backend"] = guest.state.graph(loaded.value).backend.name
                made = guest.init_execution_context(loaded.value)
                steps["init"] = made.errno
                if made.ok and made.value is not None:
                    spec_graph = guest.state.graph(loaded.value).graph
                    for index, spec in enumerate(spec_graph.inputs):
                        shape = tuple(1 if d is None else min(d, 4096) for d in (spec.shape or (1,)))
                        dtype = spec.dtype.numpy_dtype if spec.dtype is not None else np.dtype(np.float32)
                        number = TENSOR_TYPE.get(spec.dtype, 1) if spec.dtype is not None else 1
                        steps[f"set_input{index}"] = guest.set_input(made.value, index, np.zeros(shape, dtype),
                                                                     number).errno
                    steps["compute"] = guest.compute(made.value).errno
                    if steps["compute"] == 0:
                        for index in range(len(spec_graph.outputs)):
                            steps[f"get_output{index}"] = guest.get_output_bytes(made.value, index, 16 << 20)[0].errno
        report["results"][name] = steps
    store = weakref.ref(guest.state)
    guest.close()  # the embedder closes the store
    del guest, context, good
    gc.collect()
    report["store_freed"] = store() is None
    report["graphs_freed"] = graph_state() is None
    report["host_reads"] = host_reads
    host.close()
    # A guest's graphs ran in workers (by default), children of a template process: end the templates,
    # which reap their workers, so that the workers' peaks count among the children's.
    from wasinn.worker.proxy import close_templates

    close_templates()
    report["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report["children_peak_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return report


# ---- the tests ------------------------------------------------------------------------------------
_REPORTS: dict[str, tuple[dict[str, Any], list[Path], float]] = {}


def run_route(route: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], list[Path], float]:
    """The worker's report, the files left in its TMPDIR, and the marker's atime afterwards (once per route)."""
    if route in _REPORTS:
        return _REPORTS[route]
    folder = tmp_path_factory.mktemp(f"route-{route.replace('=', '-')}")
    scratch = folder / "tmp"
    scratch.mkdir()
    marker = folder / "weights-the-guest-names.bin"
    marker.write_bytes(b"host secret " * 64)
    os.utime(marker, (0, 0))  # atime 0: any read updates it (relatime updates an atime older than a day)
    env = {**os.environ, "TMPDIR": str(scratch), "PYTHONFAULTHANDLER": "1"}
    for key in ("WASINN_BACKENDS", "WASINN_DISABLE_BACKENDS", "WASINN_TFLITE_PROBE", "WASINN_OPENVINO_TFLITE_PROBE"):
        env.pop(key, None)
    proc = subprocess.run([sys.executable, __file__, route, str(marker)], capture_output=True, text=True,
                          timeout=WORKER_TIMEOUT_S, env=env, cwd=folder, check=False)
    assert proc.returncode == 0, f"the {route} worker died ({proc.returncode}):\n{proc.stderr[-3000:]}"
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    left = sorted(p for p in scratch.rglob("*"))
    _REPORTS[route] = report, left, marker.stat().st_atime
    return _REPORTS[route]


def _reads_update_atime(tmp_path: Path) -> bool:
    probe = tmp_path / "atime-probe"
    probe.write_bytes(b"x")
    os.utime(probe, (0, 0))
    probe.read_bytes()
    return probe.stat().st_atime != 0


@pytest.mark.parametrize("route", ROUTES)
def test_guest_tflite_models_leave_the_host_untouched(route: str, tmp_path_factory: pytest.TempPathFactory,
                                                      tmp_path: Path) -> None:
    report, left, atime = run_route(route, tmp_path_factory)
    assert set(report["backends"]) == ({"openvino"} if route == "allow=openvino" else {"onnx", "openvino"}
                                       if route.startswith("deny=tflite") else set(BACKENDS)), report
    assert left == [], f"files left in TMPDIR: {left}"
    if _reads_update_atime(tmp_path):
        assert atime == 0, "a runtime read the host file the model named as its weights"
    assert report["peak_rss_mb"] < MAX_RSS_MB and report["children_peak_rss_mb"] < MAX_RSS_MB, report
    for name, steps in report["results"].items():
        errnos = [v for k, v in steps.items() if k != "backend"]
        assert all(e == 0 or e in WASI_NN_ERRNOS for e in errnos), (name, steps)


def test_every_backend_installed_a_malformed_tflite_file_is_invalid_argument_and_reaches_no_backend(
        tmp_path_factory: pytest.TempPathFactory) -> None:
    report, _, _ = run_route("default", tmp_path_factory)
    refused = {"load-autodetect": ERRNO["invalid_argument"], "load-tensorflowlite": ERRNO["invalid_argument"]}
    wrong = {name: steps for name, steps in report["results"].items() if steps != refused}
    assert not wrong, f"loaded, or not invalid_argument: {wrong}"
    # OpenVINO never read a TFLite file in this process (the good model went to tflite).
    assert report["host_reads"] == [], report["host_reads"]


@pytest.mark.parametrize("route", ["deny=tflite", "allow=openvino", "deny=tflite,in-process"])
def test_without_tflite_openvino_reads_no_guest_tflite_in_the_host(route: str,
                                                                    tmp_path_factory: pytest.TempPathFactory) -> None:
    report, _, _ = run_route(route, tmp_path_factory)
    if route.endswith("in-process"):
        # The host read only IR handed back by the child (from memory: "bytes"), never a .tflite file.
        assert report["host_reads"] and set(report["host_reads"]) == {"bytes"}, report["host_reads"]
    else:
        # Isolated (the default): the host's OpenVINO read nothing at all; each worker read its guest's file.
        assert report["host_reads"] == [], report["host_reads"]
    results = report["results"]
    # What OpenVINO itself refuses stays refused, with the same errno either way.
    for name in ("truncated-64", "truncated-half", "root-offset-outside", "zeroed-body",
                 "degenerate:no_operators", "degenerate:unwritten_output", "degenerate:uninitialized_read",
                 "degenerate:read_before_write", "degenerate:external_buffer",
                 "external-weights-naming-a-host-file"):
        assert results[name]["load-autodetect"] == ERRNO["invalid_argument"], (name, results[name])
    # What it loads, it runs, or answers with an errno (checked by the test above).
    assert any(steps.get("backend") == "openvino" for steps in results.values())


@pytest.mark.parametrize("route", ROUTES)
def test_a_closed_store_that_loaded_malformed_tflite_files_is_freed(route: str,
                                                                     tmp_path_factory: pytest.TempPathFactory) -> None:
    report, _, _ = run_route(route, tmp_path_factory)
    assert report["store_freed"] and report["graphs_freed"], report


if __name__ == "__main__":
    print(json.dumps(worker(sys.argv[1], sys.argv[2])))
