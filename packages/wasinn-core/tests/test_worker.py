"""wasinn.worker: a guest's model runs in a confined worker process (issue 28), with real processes.

Every test goes through a ``WasiNnHost()`` with entry-point discovery and the default ranking, and a
real wasm guest (``TrampolineGuest``) calling ``load``. The hostile models are the ``fake`` test
backend's ``misbehave`` specs: in the worker the backend's own code does what a model that took over
its runtime could do. Each attack that would succeed in-process has its control (the same model with
``Limits(guest_models="in-process")``), so each test can fail.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import wasinn
from wasinn import Limits
from wasinn.testing.guest import ERRNO, TrampolineGuest
from wasinn.worker import proxy
from wasinn_test_backends import affine_model, fake

X = np.arange(4, dtype=np.float32).reshape(1, 4)
EXPECTED = X * 2 + 1


def hostile(do: str, arg: Any = None, hook: str = "compute") -> bytes:
    return affine_model(misbehave={"hook": hook, "do": do, "arg": arg})


@pytest.fixture
def make_guest() -> Iterator[Any]:
    made: list[tuple[wasinn.WasiNnHost, TrampolineGuest]] = []

    def make(**limits: Any) -> TrampolineGuest:
        host = wasinn.WasiNnHost(limits=Limits(**{"guest_models": "isolate", **limits}))
        guest = TrampolineGuest(host)
        made.append((host, guest))
        return guest

    yield make
    for host, guest in made:
        guest.close()
        host.close()


def worker_of(guest: TrampolineGuest, graph: int) -> proxy.WorkerGraph:
    state = guest.state.graph(graph).graph.state
    assert isinstance(state, proxy.WorkerGraph)
    return state


def infer(guest: TrampolineGuest, graph: int) -> tuple[int, int, np.ndarray | None]:
    """(errno of compute, context, output or None)."""
    ctx = guest.init_execution_context(graph).value
    assert ctx is not None
    assert guest.set_input(ctx, 0, X).ok
    errno = guest.compute(ctx).errno
    if errno:
        return errno, ctx, None
    call, out = guest.get_output(ctx, 0, np.float32, (1, 4))
    assert call.ok
    return errno, ctx, out


def test_a_guests_model_runs_in_a_worker_with_the_same_results(make_guest: Any) -> None:
    fake.LIVE_GRAPHS.clear()
    guest = make_guest()
    graph = guest.load([affine_model()]).value
    worker = worker_of(guest, graph)
    assert worker.pid != os.getpid() and not fake.LIVE_GRAPHS, "the graph lives in the worker, not the host"
    errno, _, out = infer(guest, graph)
    assert errno == 0 and np.array_equal(out, EXPECTED)
    control = make_guest(guest_models="in-process")
    errno, _, same = infer(control, control.load([affine_model()]).value)
    assert errno == 0 and np.array_equal(same, out)
    assert len(fake.LIVE_GRAPHS) == 1  # the control's graph is in-process


def _sequence(guest: TrampolineGuest) -> list[Any]:
    """Calls in orders a guest may make them, with what each answered (errnos and outputs)."""
    seen: list[Any] = []
    graph = guest.load([affine_model()]).value
    assert graph is not None
    a, b = guest.init_execution_context(graph).value, guest.init_execution_context(graph).value
    assert a is not None and b is not None
    x2 = X + 10

    def out(ctx: int) -> None:
        call, value = guest.get_output(ctx, 0, np.float32, (1, 4))
        seen.append((call.errno, None if value is None else value.tolist()))

    seen.append(guest.set_input(a, 0, X).errno)
    seen.append(guest.set_input(a, 0, x2).errno)  # the same index twice before compute: the last wins
    seen.append(guest.set_input(b, 0, X).errno)  # another context's input waits beside it
    seen.append(guest.compute(a).errno)
    out(a)
    seen.append(guest.set_input(a, 0, X).errno)  # then read before computing again
    out(a)
    seen.append(guest.compute(b).errno)
    out(b)
    seen.append(guest.set_input(a, 0, X.reshape(2, 2)).errno)  # not the declared shape: answered at once
    seen.append(guest.set_input(a, 0, X.astype(np.float64)[:, :2]).errno)
    seen.append(guest.compute(a).errno)
    out(a)
    seen.append(guest.set_input(b, 0, x2).errno)
    seen.append(guest.finalize_execution_context(b).errno)  # an input that never computed goes with it
    seen.append(guest.compute(a).errno)
    out(a)
    return seen


def test_inputs_sent_with_compute_answer_as_in_process(make_guest: Any) -> None:
    # One round trip per inference: an input that matches the graph's declaration travels with the
    # next call. Whatever order a guest makes its calls in, every call answers as in-process.
    isolated, control = _sequence(make_guest()), _sequence(make_guest(guest_models="in-process"))
    assert isolated == control
    assert isolated[4] == (0, ((X + 10) * 2 + 1).tolist()), "the last input of index 0 was used"
    assert any(isinstance(step, int) and step for step in isolated), "the sequence has refused calls too"


def test_one_round_trip_per_inference(make_guest: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    guest = make_guest()
    graph = guest.load([affine_model()]).value
    infer(guest, graph)  # the first inference sizes the shared buffers
    ctx = guest.init_execution_context(graph).value
    calls: list[str] = []
    real = proxy.WorkerGraph._call

    def counted(self: proxy.WorkerGraph, what: str, *args: Any) -> list[Any]:
        calls.append(what)
        return real(self, what, *args)

    monkeypatch.setattr(proxy.WorkerGraph, "_call", counted)
    for _ in range(5):
        assert guest.set_input(ctx, 0, X).ok and guest.compute(ctx).ok
        call, out = guest.get_output(ctx, 0, np.float32, (1, 4))
        assert call.ok and np.array_equal(out, EXPECTED)
    assert calls == ["compute"] * 5


def test_named_models_stay_in_process(make_guest: Any) -> None:
    fake.LIVE_GRAPHS.clear()
    guest = make_guest()
    guest.host.register_model("affine", affine_model())
    graph = guest.load_by_name("affine").value
    assert not isinstance(guest.state.graph(graph).graph.state, proxy.WorkerGraph)
    assert len(fake.LIVE_GRAPHS) == 1


def test_backend_errors_cross_with_their_codes_and_messages(make_guest: Any, caplog: pytest.LogCaptureFixture) -> None:
    messages = []
    for policy in ("isolate", "in-process"):
        guest = make_guest(guest_models=policy)
        graph = guest.load([affine_model(fail="compute")]).value
        errno, ctx, _ = infer(guest, graph)
        assert errno == ERRNO["runtime_error"]
        wrong = guest.set_input(ctx, 0, np.ones((1, 4), np.float64))  # the backend's own check
        assert wrong.errno == ERRNO["invalid_argument"]
        with pytest.raises(wasinn.WasiNnError) as info:
            guest.state.compute(ctx)
        messages.append(info.value.message)
        assert guest.load([affine_model(fail="load")]).errno == ERRNO["runtime_error"]
    assert messages[0] == messages[1] == "backend fake: compute failed: RuntimeError: compute failed on purpose"


def test_policy_refuse_and_in_process(make_guest: Any) -> None:
    refuse = make_guest(guest_models="refuse")
    assert refuse.load([affine_model()]).errno == ERRNO["unsupported_operation"]
    refuse.host.register_model("affine", affine_model())
    assert refuse.load_by_name("affine").ok, "the embedder's named models are unaffected"


# -- files, network, processes ---------------------------------------------------------------------
@pytest.mark.parametrize("hook", ["load", "compute"])
@pytest.mark.parametrize("do", ["write", "subprocess", "fork"])
def test_a_model_cannot_create_a_file_or_a_process(make_guest: Any, tmp_path: Path, do: str, hook: str) -> None:
    marker = tmp_path / f"{do}-{hook}"
    guest = make_guest()
    result = guest.load([hostile(do, str(marker), hook)])
    if hook == "load":
        assert result.errno == ERRNO["runtime_error"]
    else:
        assert infer(guest, result.value)[0] == ERRNO["runtime_error"]
        assert infer(guest, guest.load([affine_model()]).value)[0] == 0, "the store goes on"
    assert not marker.exists()
    control = make_guest(guest_models="in-process")
    control_result = control.load([hostile(do, str(marker), hook)])
    if hook == "compute":
        infer(control, control_result.value)
    assert marker.exists(), "in-process, the same model creates the file (the test can fail)"


def test_a_model_cannot_exec(make_guest: Any, tmp_path: Path) -> None:
    marker = tmp_path / "exec"
    guest = make_guest()
    assert infer(guest, guest.load([hostile("exec", str(marker))]).value)[0] == ERRNO["runtime_error"]
    assert not marker.exists()
    # No in-process control: exec would replace the test process itself.


def test_a_model_cannot_change_its_own_file(make_guest: Any, caplog: pytest.LogCaptureFixture) -> None:
    # The worker reads its model from an unnamed file it may map (by path): reading works, writing not.
    guest = make_guest()
    with caplog.at_level(logging.WARNING):
        assert guest.load([hostile("read", fake.OWN_MODEL, "load")]).errno == ERRNO["runtime_error"]
    assert "read b'WTST" in caplog.text, "the model's own file is readable by its path"
    for do in ("append", "write"):
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            assert guest.load([hostile(do, fake.OWN_MODEL, "load")]).errno == ERRNO["runtime_error"]
        assert "PermissionError" in caplog.text or "Read-only" in caplog.text, caplog.text
    assert infer(guest, guest.load([affine_model()]).value)[0] == 0, "the store goes on"


def test_the_models_file_is_unnamed_and_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wasinn.worker import protocol

    monkeypatch.setattr(protocol.tempfile, "gettempdir", lambda: str(tmp_path))
    fd = protocol.model_file([b"abc", memoryview(b"defg"), bytearray(b"h")])
    try:
        assert os.pread(fd, 100, 0) == b"abcdefgh"
        assert os.listdir(tmp_path) == [], "the file never has a name"
        assert os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)), "a real file, not a memfd"
        import fcntl
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
        with pytest.raises(OSError):
            os.pwrite(fd, b"x", 0)
        with pytest.raises(OSError):
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    # Where no unnamed file can be made, a sealed memfd holds the bytes.
    monkeypatch.setattr(protocol.tempfile, "gettempdir", lambda: str(tmp_path / "missing"))
    fd = protocol.model_file([b"abc"])
    try:
        assert os.readlink(f"/proc/self/fd/{fd}").startswith("/memfd:wasinn-model")
        assert os.pread(fd, 100, 0) == b"abc"
        with pytest.raises(OSError):
            os.ftruncate(fd, 10)
    finally:
        os.close(fd)


def test_a_model_cannot_touch_or_read_host_files(make_guest: Any, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s3cret-token")
    before = secret.stat()
    guest = make_guest()
    for do in ("append", "read"):
        graph = guest.load([hostile(do, str(secret))]).value
        ctx = guest.init_execution_context(graph).value
        guest.set_input(ctx, 0, X)
        with pytest.raises(wasinn.WasiNnError) as info:
            guest.state.compute(ctx)
        assert "s3cret" not in info.value.message and info.value.code is wasinn.ErrorCode.RUNTIME_ERROR
    assert secret.read_text() == "s3cret-token" and secret.stat().st_mtime_ns == before.st_mtime_ns
    control = make_guest(guest_models="in-process")
    ctx = control.init_execution_context(control.load([hostile("read", str(secret))]).value).value
    control.set_input(ctx, 0, X)
    with pytest.raises(wasinn.WasiNnError, match="s3cret"):
        control.state.compute(ctx)


@pytest.mark.parametrize("hook", ["load", "compute"])
def test_a_model_cannot_connect(make_guest: Any, tmp_path: Path, hook: str) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.5)
    unix_path = str(tmp_path / "sock")
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind(unix_path)
    unix.listen()
    unix.settimeout(0.5)
    port = server.getsockname()[1]
    try:
        guest = make_guest()
        for do, arg in (("connect", port), ("unix", unix_path)):
            result = guest.load([hostile(do, arg, hook)])
            errno = result.errno if hook == "load" else infer(guest, result.value)[0]
            assert errno == ERRNO["runtime_error"]
        for listener in (server, unix):
            with pytest.raises(TimeoutError):
                listener.accept()
        control = make_guest(guest_models="in-process")
        result = control.load([hostile("connect", port, hook)])
        assert (result.errno if hook == "load" else infer(control, result.value)[0]) == 0
        server.accept()[0].close()  # in-process, the connection was made
    finally:
        server.close()
        unix.close()


def test_a_model_cannot_signal_the_host(make_guest: Any) -> None:
    guest = make_guest()
    assert infer(guest, guest.load([hostile("kill", os.getpid())]).value)[0] == ERRNO["runtime_error"]
    # Still here: the worker's SIGTERM to the host was refused (seccomp: signals only to itself).


# -- memory, CPU, time -------------------------------------------------------------------------------
@pytest.mark.parametrize("hook", ["load", "compute"])
def test_an_allocation_past_the_cap_is_too_large(make_guest: Any, hook: str,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "wasinn")
    guest = make_guest(worker_memory_bytes=256 << 20)
    result = guest.load([hostile("alloc", 3 << 30, hook)])
    if hook == "load":
        assert result.errno == ERRNO["too_large"]
    else:
        errno, ctx, _ = infer(guest, result.value)
        assert errno == ERRNO["too_large"]
        assert guest.compute(ctx).errno == ERRNO["too_large"], "the worker lives on after a refused allocation"
    assert "256 MiB" in caplog.text and "Limits.worker_memory_bytes" in caplog.text
    assert infer(guest, guest.load([affine_model()]).value)[0] == 0
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:")) * 1024
    assert rss < 2 << 30, "the 3 GiB never reached the host"


def test_a_spinning_model_is_stopped_by_the_cpu_cap(make_guest: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "wasinn")
    guest = make_guest(worker_cpu_seconds=1, worker_call_seconds=120)
    graph = guest.load([hostile("spin")]).value
    assert infer(guest, graph)[0] == ERRNO["runtime_error"]
    assert "SIGXCPU" in caplog.text or "SIGKILL" in caplog.text
    assert "Limits.worker_cpu_seconds" in caplog.text


@pytest.mark.parametrize("do", ["spin", "sleep"])
def test_a_call_past_the_deadline_is_killed(make_guest: Any, do: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "wasinn")
    guest = make_guest(worker_call_seconds=1.5)
    graph = guest.load([hostile(do, 3600)]).value
    worker = worker_of(guest, graph)
    errno, ctx, _ = infer(guest, graph)
    assert errno == ERRNO["runtime_error"] and "Limits.worker_call_seconds" in caplog.text
    assert not Path(f"/proc/{worker.pid}").exists(), "killed and reaped"
    assert guest.compute(ctx).errno == ERRNO["runtime_error"], "the graph is dead"
    assert infer(guest, guest.load([affine_model()]).value)[0] == 0


# -- deaths --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("do", "signame"), [("abort", "SIGABRT"), ("segv", "SIGSEGV"), ("kill-self", "SIGKILL"),
                                              ("exit", "exit status 0")])
def test_a_dying_worker_is_a_clean_error(make_guest: Any, do: str, signame: str,
                                         caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "wasinn")
    guest = make_guest()
    good = guest.load([affine_model()]).value
    good_ctx = guest.init_execution_context(good).value
    bad = guest.load([hostile(do)]).value
    worker = worker_of(guest, bad)
    other_ctx = guest.init_execution_context(bad).value
    assert infer(guest, bad)[0] == ERRNO["runtime_error"]
    assert signame in caplog.text and "memory cap" in caplog.text
    # The graph is dead, its other contexts answer errors, the store and other graphs go on.
    assert guest.compute(other_ctx).errno == ERRNO["runtime_error"]
    assert guest.init_execution_context(bad).errno == ERRNO["runtime_error"]
    assert guest.finalize_execution_context(other_ctx).ok and guest.unload(bad).ok
    assert guest.set_input(good_ctx, 0, X).ok and guest.compute(good_ctx).ok
    assert not Path(f"/proc/{worker.pid}").exists(), "no zombie"


@pytest.mark.parametrize(("do", "signame"), [("abort", "SIGABRT"), ("segv", "SIGSEGV")])
def test_a_model_that_crashes_its_worker_at_load_is_malformed(make_guest: Any, do: str, signame: str,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    # The worker is the probe (wasinn.isolation's child probe, in-process): bytes that crash the
    # runtime while it loads them are a malformed model, invalid_argument; the next load goes on.
    caplog.set_level(logging.WARNING, "wasinn")
    guest = make_guest()
    assert guest.load([hostile(do, hook="load")]).errno == ERRNO["invalid_argument"]
    assert f"crashes fake ({signame} in its worker, memory cap" in caplog.text
    assert infer(guest, guest.load([affine_model()]).value)[0] == 0


def test_kill_9_mid_compute(make_guest: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "wasinn")
    guest = make_guest()
    graph = guest.load([hostile("sleep", 3600)]).value
    worker = worker_of(guest, graph)
    ctx = guest.init_execution_context(graph).value
    assert guest.set_input(ctx, 0, X).ok

    def kill_when_computing() -> None:
        # Wait until the worker sleeps in compute (it blocks in a system call), then kill it.
        for _ in range(600):
            wchan = Path(f"/proc/{worker.pid}/wchan").read_text()
            if "sleep" in wchan or "hrtimer" in wchan:
                break
            time.sleep(0.01)
        time.sleep(0.2)
        os.kill(worker.pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_when_computing)
    killer.start()
    assert guest.compute(ctx).errno == ERRNO["runtime_error"]
    killer.join()
    assert "SIGKILL" in caplog.text
    assert not Path(f"/proc/{worker.pid}").exists()
    assert infer(guest, guest.load([affine_model()]).value)[0] == 0


# -- leaks -----------------------------------------------------------------------------------------------
def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _memfd_maps() -> int:
    with open("/proc/self/maps") as maps:
        return sum("memfd:wasinn" in line for line in maps)


def _children(pid: int) -> list[str]:
    found = []
    for task in os.listdir(f"/proc/{pid}/task"):
        found += Path(f"/proc/{pid}/task/{task}/children").read_text().split()
    return found


def test_thousands_of_graphs_leave_no_process_fd_or_shared_memory(make_guest: Any) -> None:
    guest = make_guest()
    infer(guest, guest.load([affine_model()]).value)  # the template is up
    made = proxy.template(guest.state.graph(0).backend)
    guest.state.close()
    guest = make_guest()
    gc.collect()
    fds, maps = _fds(), _memfd_maps()
    for round_ in range(2000):
        graph = guest.load([affine_model()]).value
        if round_ % 3 == 0:
            assert infer(guest, graph)[0] == 0
        elif round_ % 3 == 1:
            guest.init_execution_context(graph)  # left for unload / finalize
        assert guest.unload(graph).ok
        if round_ % 100 == 99:
            guest.state.close()  # the store's close releases what is left
            guest = make_guest()
    guest.state.close()
    gc.collect()
    assert _children(made.pid) == [], "every worker was reaped"
    assert _fds() == fds and _memfd_maps() == maps


def test_the_templates_go_with_the_host_process(make_guest: Any) -> None:
    guest = make_guest()
    graph = guest.load([affine_model()]).value
    worker = worker_of(guest, graph)
    template_pid = worker.template.pid
    proxy.close_templates()
    assert not Path(f"/proc/{template_pid}").exists() and not Path(f"/proc/{worker.pid}").exists()
    assert guest.init_execution_context(graph).errno == ERRNO["runtime_error"], "its worker went with it"
