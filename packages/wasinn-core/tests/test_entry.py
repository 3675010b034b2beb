"""The trampoline between wasmtime and the import bodies (wasinn.abi.entry): both paths, same behaviour."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import wasmtime

import wasinn
from wasinn.abi import entry
from wasinn.host.state import StoreState
from wasinn.testing.guest import ERRNO, TrampolineGuest
from wasinn_test_backends import affine_model

TESTS = Path(__file__).parent


def test_the_unchecked_c_api_is_used_with_the_wasmtime_py_we_test_on() -> None:
    # If a wasmtime-py release moves the internals this path uses, this fails here rather than the
    # project silently falling back to the 10x slower portable trampoline.
    assert entry.MODE == "unchecked"


def test_parameters_arrive_signed_and_in_order_and_the_errno_goes_back(guest: TrampolineGuest) -> None:
    graph = guest.load([affine_model("f32", (2, 2))])
    assert graph.ok
    ctx = guest.init_execution_context(graph.value).value  # type: ignore[arg-type]
    x = np.array([[1, -2], [3, 4]], np.float32)
    assert guest.set_input(ctx, 0, x, 1).ok  # type: ignore[arg-type]
    assert guest.compute(ctx).ok  # type: ignore[arg-type]
    call, out = guest.get_output(ctx, 0, "<f4", (2, 2))  # type: ignore[arg-type]
    assert call.ok and call.value == 16
    np.testing.assert_array_equal(out, x * 2 + 1)
    # 0xFFFFFFFF arrives as -1 and is read back as handle 4294967295: an unknown context, not a crash.
    assert guest.call("compute", -1) == ERRNO["invalid_argument"]
    # A pointer at the very top of the 32-bit space: out of bounds, errno, no trap.
    assert guest.call("init_execution_context", graph.value, 0xFFFFFFFC) == ERRNO["invalid_argument"]  # type: ignore[arg-type]


def test_an_exception_that_is_no_wasi_nn_error_traps_and_reaches_the_embedder(
        guest: TrampolineGuest, monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(self: StoreState, handle: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(StoreState, "compute", interrupted)
    graph = guest.load([affine_model()]).value
    ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):  # never swallowed into an errno, never lost in the C frames
        guest.call("compute", ctx)  # type: ignore[arg-type]
    monkeypatch.undo()
    # the store goes on: the same context infers
    assert guest.set_input(ctx, 0, np.ones((1, 4), np.float32), 1).ok  # type: ignore[arg-type]
    assert guest.compute(ctx).ok  # type: ignore[arg-type]
    assert guest.load([affine_model()]).ok


def test_one_linker_serves_stores_of_different_hosts() -> None:
    engine = wasmtime.Engine()
    first, second = wasinn.WasiNnHost(), wasinn.WasiNnHost()
    a, b = TrampolineGuest(first, engine), TrampolineGuest(second, engine)
    assert a.load([affine_model()]).value == 0
    assert b.load([affine_model()]).value == 0
    assert a.state.graph_count == 1 and b.state.graph_count == 1
    a.close()
    b.close()


def test_the_portable_path_passes_the_abi_and_hostile_suites() -> None:
    """WASINN_HOST_CALLS=portable: wasmtime-py's own define_func, for a wasmtime-py whose internals differ."""
    env = dict(os.environ, WASINN_HOST_CALLS="portable")
    code = "from wasinn.abi import entry; assert entry.MODE == 'portable', entry.MODE"
    subprocess.run([sys.executable, "-c", code], env=env, check=True)
    tests = [str(TESTS / "test_abi.py"), str(TESTS / "hostile" / "test_abi_edges.py"),
             str(TESTS / "hostile" / "test_names.py")]
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
