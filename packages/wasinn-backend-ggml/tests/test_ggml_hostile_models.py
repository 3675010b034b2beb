"""GGUF models that make the host spend memory, and guest temporaries left behind (issue 26, rows 3, 4, 13).

* A model declaring a context of 2^29 or 2^31-1 tokens: tokenizing an 11-byte prompt used to cost
  ``4 * n_ctx_train`` bytes (llama-cpp-python's ``tokenize`` sizes its buffer by the declared context),
  in the probe process and again in the host.
* ``ctx-size`` from the guest (and a model declaring 1M tokens): the KV cache and compute buffers of
  each context, and of all the contexts of a store, are bounded by the embedder's ``Limits``.
* A guest's GGUF bytes go to a temporary file for llama.cpp: it must not outlive the load.

Each case runs in a child process through the default ranking (``WasiNnHost()`` with entry-point
discovery, a wasm guest calling ``load``); the child reports its errnos and its peak RSS (VmHWM), and
its probe process's (``RUSAGE_CHILDREN``). A watchdog kills a child whose tree passes
:data:`WATCHDOG_BYTES`, so that a regression fails the test instead of taking the machine down.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from wasinn_backend_ggml.testing import TinyLlama, write_tiny_llama

INVALID_ARGUMENT, TOO_LARGE = 1, 7
MiB = 1 << 20
#: Peak RSS allowed to a child doing one case. Its baseline (Python, wasmtime, llama.cpp and a tiny
#: model) is about 75 MB; on top of it the limits allow what a tiny model costs: a few MiB of KV
#: cache per context (the store's 4 GiB budget is mostly compute-buffer reservations, of which a
#: short prompt touches little) and the tokenizer's charge for a prompt. The old code took 2.1 GB
#: (context length 2^29) and 256 MiB per context (ctx-size 2^20).
PEAK_RSS_BOUND = 600 * MiB
#: A safety net, not the bound: past this the child is killed and the case fails.
WATCHDOG_BYTES = 1536 * MiB

WORKER = r"""
import json, logging, os, resource, sys, time
import wasinn
from wasinn.abi.ephemeral import FUNCTIONS
from wasinn.testing.guest import TrampolineGuest

logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
path, plan = sys.argv[1], json.loads(sys.argv[2])
functions = {name: arity for name, (arity, _) in FUNCTIONS.items()}  # WasmEdge's numbering, as GGML guests


def temporaries():
    folder = os.environ.get("TMPDIR")
    return sorted(n for n in os.listdir(folder) if n.startswith("wasinn-ggml-")) if folder else []


out = {"steps": []}
started = time.perf_counter()
host = wasinn.WasiNnHost()
if plan.get("named"):
    host.register_model("m", path)
g = TrampolineGuest(host, functions=functions)
graph = g.load_by_name("m") if plan.get("named") else g.load([open(path, "rb").read()], encoding=6)
out["load"] = graph.errno
out["load_s"] = round(time.perf_counter() - started, 2)
out["temporaries_after_load"] = temporaries()
contexts = []
if graph.ok:
    for _ in range(plan.get("contexts", 1)):
        ctx = g.init_execution_context(graph.value)
        errno = ctx.errno
        if ctx.ok:
            contexts.append(ctx.value)
            for index, data in ((1, plan.get("metadata")), (0, plan.get("prompt", "hello world"))):
                if data is not None and not errno:
                    raw = data.encode() if isinstance(data, str) else (b"hello world " * (data // 12 + 1))[:data]
                    errno = g.call("set_input", ctx.value, index, g.tensor_record(raw, [1], 3))
            if not errno and plan.get("compute", True):
                errno = g.compute(ctx.value).errno
        out["steps"].append(errno)
        if errno:
            break
    if plan.get("retry_after_finalize") and out["steps"][-1] and len(contexts) > 1:
        # What was held is given back: one context less, and the next one fits.
        g.finalize_execution_context(contexts[0])
        errno = g.compute(contexts[-1]).errno
        out["retry"] = errno
out["total_s"] = round(time.perf_counter() - started, 2)
with open("/proc/self/status") as status:
    out["rss"] = next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))
out["probe_rss"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
sys.stdout.flush()
exit_how = plan.get("exit", "normal")
print(json.dumps(out), flush=True)
if exit_how == "os._exit":
    os._exit(0)
if exit_how == "SIGKILL":
    os.kill(os.getpid(), 9)
if exit_how == "close":
    g.close()
    host.close()
# "normal": the store is never closed; the interpreter shuts down with everything alive
"""


def _rss(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _tree(root: int) -> list[int]:
    """``root`` and its descendants (the probe process of a load is one)."""
    parents: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                with open(f"/proc/{name}/stat") as stat:
                    ppid = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def run_case(model: Path, plan: dict[str, Any], tmp: Path) -> tuple[dict[str, Any], str]:
    """Run one case in a child process (the default ranking: WASINN_BACKENDS unset); its report and
    its stderr (the log lines)."""
    env = {k: v for k, v in os.environ.items() if k not in ("WASINN_BACKENDS", "WASINN_DISABLE_BACKENDS")}
    env["TMPDIR"] = str(tmp)  # the guest temporaries land here, and only here
    out_path, err_path = tmp / "report.json", tmp / "stderr.txt"
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        child = subprocess.Popen([sys.executable, "-c", WORKER, str(model), json.dumps(plan)], stdout=out,
                                 stderr=err, stdin=subprocess.DEVNULL, env=env)
        killed = 0
        deadline = time.monotonic() + 300
        while child.poll() is None:
            tree = _tree(child.pid)
            total = sum(_rss(pid) for pid in tree)
            if total > WATCHDOG_BYTES or time.monotonic() > deadline:
                killed = total
                for pid in reversed(tree):
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except OSError:
                        pass
                child.wait()
                break
            time.sleep(0.02)
    stderr = err_path.read_text(errors="replace")
    assert not killed, f"the child's process tree passed {WATCHDOG_BYTES // MiB} MiB ({killed // MiB} MiB): " \
                       f"killed. Log: {stderr[-1500:]}"
    lines = out_path.read_text().strip().splitlines()
    assert lines, f"the child died ({child.returncode}): {stderr[-2000:]}"
    report: dict[str, Any] = json.loads(lines[-1])
    report["peak"] = max(report["rss"], report["probe_rss"])
    print(f"{model.name} {plan}: load {report['load_s']} s, total {report['total_s']} s, peak RSS "
          f"{report['rss'] // MiB} MiB (probe {report['probe_rss'] // MiB} MiB), errnos {report['load']} "
          f"{report['steps']}")
    return report, stderr


TINY = TinyLlama()


def declaring(folder: Path, name: str, value: Any, kind: str = "u32", spec: TinyLlama = TINY) -> Path:
    return write_tiny_llama(folder / f"{name}.gguf", spec, metadata={"llama.context_length": (value, kind)})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("declared")


# -- row 3: the declared context length ---------------------------------------------------------------
@pytest.mark.parametrize("declared", [1 << 29, (1 << 31) - 1, 1 << 31, (1 << 32) - 1])
@pytest.mark.parametrize("ctx_size", [None, 0])  # 0: "the model's context", which the embedder caps
def test_a_huge_declared_context_costs_nothing(models: Path, tmp_path: Path, declared: int,
                                               ctx_size: int | None) -> None:
    model = declaring(models, f"ctx{declared}", declared)
    metadata = {"n-predict": 2, "temp": 0} | ({} if ctx_size is None else {"ctx-size": ctx_size})
    report, log = run_case(model, {"metadata": json.dumps(metadata), "prompt": "hello world"}, tmp_path)
    assert report["load"] == 0 and report["steps"] == [0], log[-2000:]
    assert report["peak"] < PEAK_RSS_BOUND
    assert "max_context_tokens" in log  # the load says the declared context is capped, and by what


@pytest.mark.parametrize("value, kind", [(1 << 29, "u64"), (1 << 40, "u64"), (1 << 29, "i32"), (-1, "i32"),
                                         (1 << 29, "i64"), (5.0e8, "f32"), ("536870912", "str")])
def test_a_declared_context_of_another_type_is_refused(models: Path, tmp_path: Path, value: Any,
                                                       kind: str) -> None:
    # llama.cpp reads llama.context_length as a u32 only: any other type is a malformed model.
    model = declaring(models, f"ctx-{kind}-{value}", value, kind)
    report, log = run_case(model, {"metadata": json.dumps({"n-predict": 2})}, tmp_path)
    assert report["load"] == INVALID_ARGUMENT, log[-2000:]
    assert report["peak"] < PEAK_RSS_BOUND


def test_a_long_prompt_on_long_tokens_is_charged(models: Path, tmp_path: Path) -> None:
    # A vocabulary with a 4096-byte token lets a prompt of up to (max_context_tokens + 256) * 4096
    # bytes (135 MB) past the "cannot fit any context" check; llama.cpp's tokenizer costs ~40 bytes
    # per prompt byte. The tokenizer's memory is charged to the context first: too_large.
    from wasinn_backend_ggml.testing import vocabulary

    tokens = vocabulary()[0]
    tokens[-1] = "x" * 4096
    model = write_tiny_llama(models / "long-token.gguf", tokens=tokens,
                             metadata={"llama.context_length": (1 << 20, "u32")})
    report, log = run_case(model, {"prompt": 64 * MiB, "compute": False}, tmp_path)
    assert report["load"] == 0 and report["steps"] == [TOO_LARGE], log[-2000:]
    assert "max_runtime_bytes_per_context" in log
    assert report["peak"] < PEAK_RSS_BOUND


# -- row 4: ctx-size, batch sizes and the KV cache ------------------------------------------------------
#: 8 layers of 4 KV heads of 16: 2 KiB of KV cache per token, 2 GiB for a 1M-token context.
HEAVY_KV = TinyLlama(n_layer=8, n_head=4, n_head_kv=4)


@pytest.mark.parametrize("how", ["guest bytes", "named model"])
@pytest.mark.parametrize("metadata, prompt, errno", [
    ({"ctx-size": 1 << 20}, 11, 0),  # capped at max_context_tokens (logged)
    ({"ctx-size": float(1 << 20)}, 11, 0),
    ({"ctx-size": 0}, 11, 0),  # the model's 1M context, capped the same way
    ({"ctx-size": 1 << 31}, 11, INVALID_ARGUMENT),
    ({"ctx-size": str(1 << 20)}, 11, INVALID_ARGUMENT),
    # The compute buffers grow with ubatch-size times the context: 4 bytes per head and token pair.
    ({"ctx-size": 1 << 20, "batch-size": 1 << 16, "ubatch-size": 1 << 16}, 11, TOO_LARGE),
    ({"ctx-size": 32768, "batch-size": 4096, "ubatch-size": 4096}, 11, TOO_LARGE),
    ({"ctx-size": 32768, "batch-size": 2048, "ubatch-size": 2048}, 11, TOO_LARGE),
    ({"ctx-size": 8192, "batch-size": 8192, "ubatch-size": 8192}, 8000, TOO_LARGE),  # a prompt that fills them
    ({"ctx-size": 4096}, 1500, 0),  # a long prompt in micro-batches of 512
])
def test_ctx_size_is_bounded_by_the_embedder(models: Path, tmp_path: Path, how: str, metadata: dict[str, Any],
                                             prompt: int, errno: int) -> None:
    model = declaring(models, "heavy-1M", 1 << 20, spec=HEAVY_KV)
    plan = {"metadata": json.dumps({"n-predict": 1, "temp": 0, **metadata}), "prompt": prompt,
            "named": how == "named model"}
    report, log = run_case(model, plan, tmp_path)
    assert report["load"] == 0 and report["steps"] == [errno], log[-2000:]
    assert report["peak"] < PEAK_RSS_BOUND
    if errno == TOO_LARGE:
        assert "max_runtime_bytes_per_context" in log  # the line names the limit
    elif errno == 0 and metadata.get("ctx-size", 0) in (0, 1 << 20):
        assert "max_context_tokens" in log


@pytest.mark.parametrize("how", ["guest bytes", "named model"])
def test_kv_caches_of_a_store_are_bounded(models: Path, tmp_path: Path, how: str) -> None:
    # Contexts of ctx-size 2^20 (capped) one after the other in one store, until the store's budget
    # (or, isolated, the worker's memory cap) refuses one: too_large, long before the 256 contexts a
    # store may have; finalizing one gives its share back.
    model = declaring(models, "tiny-1M", 1 << 20)
    plan = {"metadata": json.dumps({"ctx-size": 1 << 20, "n-predict": 1, "temp": 0}), "contexts": 256,
            "retry_after_finalize": True, "named": how == "named model"}
    report, log = run_case(model, plan, tmp_path)
    steps = report["steps"]
    assert report["load"] == 0 and steps[-1] == TOO_LARGE, log[-2000:]
    assert 2 <= len(steps) < 64 and set(steps[:-1]) == {0}
    # A guest's model runs in a worker (the default): what its memory cap leaves bounds the store's
    # contexts there, before the store's own limit does.
    assert ("Limits.worker_memory_bytes" if how == "guest bytes" else "max_runtime_bytes_per_store") in log
    assert report["retry"] == 0
    assert report["peak"] < PEAK_RSS_BOUND


# -- row 13: the temporary file of a guest's model ------------------------------------------------------
@pytest.mark.parametrize("exit_how", ["normal", "close", "os._exit", "SIGKILL"])
def test_a_guest_models_temporary_does_not_outlive_the_load(models: Path, tmp_path: Path, exit_how: str) -> None:
    # The store is never closed ("normal": the interpreter shuts down with the graph alive), or the
    # process ends without running exit handlers: no wasinn-ggml-*.gguf is left in TMPDIR.
    model = declaring(models, "tiny", 256)
    temp = tmp_path / "tmp"
    temp.mkdir()
    report, log = run_case(model, {"metadata": json.dumps({"n-predict": 1}), "exit": exit_how}, temp)
    assert report["load"] == 0 and report["steps"] == [0], log[-2000:]
    assert report["temporaries_after_load"] == []  # llama.cpp has the file mapped: its name is gone already
    assert [p.name for p in temp.iterdir() if p.name.startswith("wasinn-ggml-")] == []


def test_a_refused_models_temporary_is_removed(models: Path, tmp_path: Path) -> None:
    model = declaring(models, "ctx-u64", 1 << 29, "u64")
    temp = tmp_path / "tmp"
    temp.mkdir()
    report, log = run_case(model, {}, temp)
    assert report["load"] == INVALID_ARGUMENT, log[-2000:]
    assert [p.name for p in temp.iterdir() if p.name.startswith("wasinn-ggml-")] == []


# -- row 14: the metadata input is optional ----------------------------------------------------------------
def test_only_the_metadata_input_is_optional() -> None:
    from wasinn_backend_ggml.backend import INPUTS

    assert [spec.optional for spec in INPUTS] == [False, True]
