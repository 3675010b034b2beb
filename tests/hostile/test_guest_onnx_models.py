"""A guest's hostile ONNX models, on every backend that reads ONNX (integration env: all installed).

The bombs of ``packages/wasinn-backend-onnx/tests/onnx_bomb_models.py`` (a few hundred bytes asking a
runtime for a gigabyte: ConstantOfShape, Expand, Tile, Range, Resize, Upsample, a broadcast, a Loop
of Concat doublings, sparse tensors, strings, node and function floods) go through a real guest
``load``: through the default ranking (every backend installed, as a host would run), and forced to
ONNX Runtime and to OpenVINO. One child process per backend runs them all, one store each: every
bomb must end in its exact errno, the child's peak RSS must stay within a bound of its baseline,
and the host must still serve a good model after each. If the child dies (a native crash, a hang),
the variant it died in fails and the rest run in a new child.

Then log lines: a node name, op type or domain with a newline (or a terminal escape) in it never
becomes a log line of its own, in the host's log or on the process's stderr, through either backend.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import wasinn
from wasinn import ErrorCode
from wasinn.abi.profiles import WITX_ERRORS

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "packages" / "wasinn-backend-onnx" / "tests" / "onnx_bomb_models.py"
sys.path.insert(0, str(WORKER.parent))

from onnx_bomb_models import (  # noqa: E402
    BOMBS,
    TEST_LIMITS,
    MiB,
    first_failure,
    forged_lines,
    forging_models,
    run_forging_model,
)

TOO_LARGE, UNSUPPORTED = WITX_ERRORS[ErrorCode.TOO_LARGE], WITX_ERRORS[ErrorCode.UNSUPPORTED_OPERATION]
#: Guest sessions of ONNX Runtime compute in an arena capped at max_runtime_bytes_per_context
#: (128 MiB here), which keeps what it got; OpenVINO refuses before allocating. Beyond that, 64 MiB
#: of bookkeeping: never the gigabyte each bomb asks for.
GROWTH_BOUND = TEST_LIMITS["max_runtime_bytes_per_context"] + 64 * MiB
#: The child's whole peak: about 180 MB of Python, wasmtime, ONNX Runtime and OpenVINO, plus the growth.
PEAK_BOUND = 450 * 1000 * 1000
BACKENDS = ["default", "onnx", "openvino"]
CHILD_TIMEOUT_S = 600

#: Refused from the bytes by the host, before any backend sees them.
HOST_REFUSES = {"sparse_initializer": TOO_LARGE, "sparse_constant": TOO_LARGE, "node_flood": TOO_LARGE,
                "function_flood": TOO_LARGE, "string_expand": UNSUPPORTED, "string_cast": UNSUPPORTED}
#: OpenVINO: sized by its shape inference before it compiles; unbounded sizes refused.
OPENVINO_AT_LOAD = {"concat_loop": UNSUPPORTED, **{f"constant_of_shape_input_{t}": UNSUPPORTED for t in
                                                     ("f32", "f64", "i64")}}


def expected(backend: str, variant: str) -> tuple[str, int]:
    """The step a bomb must fail at, and its errno."""
    if variant in HOST_REFUSES:
        return "load", HOST_REFUSES[variant]
    if backend == "openvino":
        if variant == "reshape_broadcast_dynamic":
            return "compute", TOO_LARGE  # only the shapes the guest sends tell
        return "load", OPENVINO_AT_LOAD.get(variant, TOO_LARGE)
    # ONNX Runtime (the default ranking's choice for ONNX on a CPU): its own output shapes at load,
    # the capped arena at compute.
    return ("load" if variant.startswith("constant_of_shape_output") else "compute"), TOO_LARGE


@functools.cache
def sweep(backend: str) -> dict[str, dict[str, object]]:
    """Every bomb through ``backend`` in child processes; variant -> RESULT (or {"died": how})."""
    remaining = sorted(BOMBS)
    results: dict[str, dict[str, object]] = {}
    env = {k: v for k, v in os.environ.items() if k not in ("WASINN_BACKENDS", "WASINN_DISABLE_BACKENDS")}
    while remaining:
        command = [sys.executable, str(WORKER), *remaining] + ([] if backend == "default" else ["--backend", backend])
        current = None
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=env)
            stdout, stderr, how = proc.stdout, proc.stderr, f"exit status {proc.returncode}"
        except subprocess.TimeoutExpired as exc:
            stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
            how = f"no result within {CHILD_TIMEOUT_S} s"
        for line in stdout.splitlines():
            if line.startswith("BEGIN "):
                current = line[6:]
            elif line.startswith("RESULT "):
                result = json.loads(line[7:])
                results[result["variant"]] = result
                current = None
        remaining = [v for v in remaining if v not in results]
        if not remaining:
            break
        if current is None:
            pytest.fail(f"the {backend} worker failed before its first variant ({how}):\n{stderr[-3000:]}")
        results[current] = {"died": f"{how}; stderr tail:\n" + "\n".join(stderr.splitlines()[-15:])}
        remaining.remove(current)
    return results


@pytest.mark.parametrize("variant", sorted(BOMBS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_guest_onnx_bomb_is_refused_within_bounded_memory(backend: str, variant: str) -> None:
    result = sweep(backend)[variant]
    assert "died" not in result, f"{backend} {variant}: the host died: {result['died']}"
    step, errno = first_failure(result)
    start, peak = int(result["hwm_start"]), int(result["hwm_after"])  # type: ignore[call-overload]
    report = f"{backend} {variant}: {step} errno {errno}, peak RSS {peak / 1e6:.0f} MB (+{(peak - start) / 1e6:.0f} MB)"
    print(report)
    if backend == "default" and "backend" in result:
        assert result["backend"] == "onnx", report  # ONNX Runtime outranks OpenVINO for ONNX on a CPU
    assert (step, errno) == expected(backend, variant), report
    assert peak - start < GROWTH_BOUND, report
    assert peak < PEAK_BOUND, report
    assert result["good_before"] and result["good_after"] and result["good_new_store"], f"{report}: {result}"


# -- log lines -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", sorted(forging_models()))
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_guest_cannot_forge_a_log_line(backend: str, spelling: str, caplog: pytest.LogCaptureFixture,
                                         capfd: pytest.CaptureFixture[str]) -> None:
    data, feed = forging_models()[spelling]
    caplog.set_level(logging.DEBUG)
    with wasinn.WasiNnHost(backend=None if backend == "default" else backend) as host:
        errnos = run_forging_model(host, data, feed)
    assert any(errnos), f"{backend} {spelling}: the model did not fail ({errnos})"
    out, err = capfd.readouterr()
    forged = forged_lines(caplog.text + out + err)
    assert not forged, f"{backend} {spelling}: a forged line reached the log: {forged}"
    for record in caplog.records:
        assert record.getMessage().isprintable(), f"unescaped control characters in {record.getMessage()!r}"
