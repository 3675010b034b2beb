"""wasinn.sandbox with real child processes: each layer applied by a child that then tries to break it,
and the same child without the layer (the control, so that each test can fail).

The child is tests/sandbox_children/child.py; it prints what it applied and what its attempt gave,
or dies by a signal, which the parent reads from its exit status.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import wasinn.sandbox
from wasinn.sandbox import LAYERS, Confinement, SandboxError, landlock, probe, rlimits, seccomp
from wasinn.sandbox._sys import ARCH, AUDIT_ARCH, TABLES

CHILD = Path(__file__).parent / "sandbox_children" / "child.py"
SRC = Path(wasinn.sandbox.__file__).resolve().parents[2]  # the wasinn these tests import

LANDLOCK = landlock.abi()
SECCOMP = seccomp.available()
needs_landlock = pytest.mark.skipif(LANDLOCK < 1, reason=landlock.abi_reason())
needs_seccomp = pytest.mark.skipif(not SECCOMP, reason=seccomp.reason())
x86_64_only = pytest.mark.skipif(ARCH != "x86_64", reason="an x86_64 ABI trick")

# One layer at a time (the others off), and everything together.
MEMORY = {"files": False, "syscalls": False, "privileges": False}
FILES = {"files": True, "syscalls": False, "privileges": False}
SYSCALLS = {"files": False, "syscalls": True, "privileges": False}
CPU = {"files": False, "syscalls": False, "privileges": False}
FULL = {"memory_bytes": 1 << 30, "cpu_seconds": 120}

MiB = 1 << 20
#: Runtime name (tests/sandbox_children/measure.py) -> the module it needs. The tests of each runtime
#: exist where it is installed: tox's integration env (onnx, openvino, tflite) and ggml env run this
#: file for theirs (see tox.ini); the core env, which has none, only numpy's.
ALL_RUNTIMES = {"numpy": "numpy", "onnx": "onnxruntime", "openvino": "openvino",
                "tflite": "ai_edge_litert.interpreter", "ggml": "llama_cpp"}
RUNTIMES = {name: module for name, module in ALL_RUNTIMES.items()
            if importlib.util.find_spec(module.split(".")[0]) is not None}


@dataclass
class Child:
    returncode: int
    confined: dict[str, Any] | None
    outcome: dict[str, Any] | None
    stderr: str

    @property
    def ok(self) -> bool:
        return self.outcome is not None and self.outcome["outcome"] == "ok"

    def refused(self, errno_: int | None = None, kind: str = "PermissionError") -> bool:
        o = self.outcome
        return o is not None and o["outcome"] == "error" and o["type"] == kind and \
            (errno_ is None or o["errno"] == errno_)

    def killed_by(self, sig: signal.Signals) -> bool:
        return self.returncode == -sig


def child_cmd(action: str, arg: object = None, confine: dict[str, Any] | None = None) -> list[str]:
    return [sys.executable, str(CHILD), json.dumps({"action": action, "arg": arg, "confine": confine})]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), *filter(None, [env.get("PYTHONPATH")])])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def run(action: str, arg: object = None, confine: dict[str, Any] | None = None, *, cwd: Path | None = None,
        timeout: float = 300, must_confine: bool = True, env: dict[str, str] | None = None) -> Child:
    proc = subprocess.run(child_cmd(action, arg, confine), capture_output=True, text=True, cwd=cwd,
                          env={**child_env(), **(env or {})}, timeout=timeout)
    confined = outcome = None
    for line in proc.stdout.splitlines():
        fields = json.loads(line)
        if "confined" in fields:
            confined = fields
        elif "outcome" in fields:
            outcome = fields
    if must_confine and confine is not None and confined is None:
        pytest.fail(f"the child did not confine itself: rc={proc.returncode}\n{proc.stderr[-3000:]}")
    return Child(proc.returncode, confined, outcome, proc.stderr)


def capable(cap: int) -> bool:
    return any(line.startswith("CapEff:") and int(line.split()[1], 16) >> cap & 1
               for line in Path("/proc/self/status").read_text().splitlines())


@pytest.fixture
def listener() -> Iterator[int]:
    """A TCP listener on the loopback (nothing leaves the machine); yields its port."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield s.getsockname()[1]


# --- probe -----------------------------------------------------------------------------------------


def test_probe_reports_every_layer_with_a_reason() -> None:
    found = probe()
    assert [layer.name for layer in found.layers] == list(LAYERS)
    for layer in found.layers:
        assert layer.how and layer.stops
    assert found.layer("files").available == (LANDLOCK >= 1)
    assert found.layer("network").available == SECCOMP == found.layer("processes").available
    assert found.landlock_abi == LANDLOCK
    assert {layer.name for layer in found.missing()} == {layer.name for layer in found.layers if not layer.available}
    text = "\n".join(found.lines())
    for name in LAYERS:
        assert f"{name}: " in text
    if LANDLOCK:
        assert f"Landlock ABI {LANDLOCK}" in found.layer("files").how


def test_probe_applies_nothing() -> None:
    # The probe runs in the host: it must leave the process as free as it found it.
    before = Path("/proc/self/status").read_text()
    probe()
    after = Path("/proc/self/status").read_text()
    for key in ("NoNewPrivs", "Seccomp", "CapEff"):
        assert [line for line in before.splitlines() if line.startswith(key)] == \
            [line for line in after.splitlines() if line.startswith(key)]


def test_landlock_rights_grow_with_the_abi() -> None:
    assert landlock.fs_rights(0) == 0
    assert landlock.fs_rights(1) == (1 << 13) - 1
    assert landlock.fs_rights(2) == (1 << 14) - 1
    assert landlock.fs_rights(3) == landlock.fs_rights(4) == (1 << 15) - 1
    assert landlock.fs_rights(5) == landlock.fs_rights(7) == (1 << 16) - 1


def test_runtime_read_paths_leave_out_the_current_and_script_directories(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [str(tmp_path / "script-dir"), str(tmp_path), *sys.path])
    (tmp_path / "script-dir").mkdir()
    paths = landlock.runtime_read_paths("/the/model")
    assert str(tmp_path) not in paths and str(tmp_path / "script-dir") not in paths
    assert sys.prefix in paths and "/the/model" in paths
    assert str(tmp_path) in landlock.runtime_read_paths(cwd=True)


# --- the seccomp program, checked instruction by instruction on both architectures ------------------


def evaluate(flt: seccomp.Filter, nr: int, args: tuple[int, ...] = (), arch: int | None = None) -> int:
    """Run a classic-BPF seccomp program on one syscall, as the kernel does."""
    arch = AUDIT_ARCH[flt.arch] if arch is None else arch
    full = (list(args) + [0] * 6)[:6]

    def word(offset: int) -> int:
        if offset == 0:
            return nr & 0xFFFFFFFF
        if offset == 4:
            return arch
        index, high = divmod(offset - 16, 8)
        return (full[index] >> (32 if high else 0)) & 0xFFFFFFFF

    a, pc = 0, 0
    while True:
        code, jt, jf, k = flt.insns[pc]
        if code == 0x20:
            a = word(k)
        elif code == 0x54:
            a &= k
        elif code == 0x06:
            return k
        elif code in (0x15, 0x35, 0x45):
            taken = a == k if code == 0x15 else a >= k if code == 0x35 else bool(a & k)
            pc += jt if taken else jf
        else:
            raise AssertionError(f"unexpected opcode {code:#x}")
        pc += 1
        assert pc < len(flt.insns)


EPERM = seccomp.RET_ERRNO | 1
ENOSYS = seccomp.RET_ERRNO | 38
KILL = seccomp.RET_KILL_PROCESS
ALLOW = seccomp.RET_ALLOW


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_filter_decisions(arch: str) -> None:
    nr = TABLES[arch]
    flt = seccomp.worker_filter(pid=4242, arch=arch)
    # Every jump lands inside the program, and every path ends in a return.
    for i, (code, jt, jf, _) in enumerate(flt.insns):
        if code in (0x15, 0x35, 0x45):
            assert i + 1 + max(jt, jf) < len(flt)
    assert flt.insns[-1] == (0x06, 0, 0, ALLOW)
    read = {"x86_64": 0, "aarch64": 63}[arch]
    assert evaluate(flt, read) == ALLOW
    assert evaluate(flt, read, arch=0x40000003) == KILL  # i386 (int 0x80)
    for name in seccomp.EPERM_CALLS:
        if name in nr:
            assert evaluate(flt, nr[name]) == EPERM, name
    for name in seccomp.KILL_CALLS:
        if name in nr:
            assert evaluate(flt, nr[name]) == KILL, name
    thread = 0x3D0F00  # glibc's pthread_create flags: CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|...
    assert evaluate(flt, nr["clone"], (thread,)) == ALLOW
    assert evaluate(flt, nr["clone"], (0x01200011,)) == EPERM  # glibc's fork
    assert evaluate(flt, nr["clone"], (0x4111,)) == EPERM  # posix_spawn: CLONE_VM|CLONE_VFORK
    assert evaluate(flt, nr["clone"], (thread | 0x10000000,)) == EPERM  # a thread in a new user namespace
    assert evaluate(flt, nr["clone3"]) == ENOSYS
    assert evaluate(flt, nr["mmap"], (0, 4096, 3, 0x22)) == ALLOW  # MAP_PRIVATE|MAP_ANONYMOUS
    assert evaluate(flt, nr["mmap"], (0, 4096, 1, 0x02, 5)) == ALLOW  # a private file mapping
    assert evaluate(flt, nr["mmap"], (0, 4096, 3, 0x01, 5)) == ALLOW  # a shared file mapping
    assert evaluate(flt, nr["mmap"], (0, 4096, 3, 0x21)) == EPERM  # MAP_SHARED|MAP_ANONYMOUS
    assert evaluate(flt, nr["mmap"], (0, 4096, 3, 0x23)) == EPERM  # MAP_SHARED_VALIDATE|MAP_ANONYMOUS
    assert evaluate(flt, nr["ioctl"], (1, 0x5412)) == EPERM  # TIOCSTI
    assert evaluate(flt, nr["ioctl"], (1, 0x5401)) == ALLOW  # TCGETS
    for name in ("kill", "tgkill", "rt_sigqueueinfo", "rt_tgsigqueueinfo"):
        assert evaluate(flt, nr[name], (4242, 10)) == ALLOW, name
        for other in (1, 0, 0xFFFFFFFF, 4243):  # init, our process group, every process, a neighbour
            assert evaluate(flt, nr[name], (other, 10)) == EPERM, (name, other)
    assert evaluate(flt, nr["prlimit64"], (0, 7, 0, 1)) == ALLOW
    assert evaluate(flt, nr["prlimit64"], (4242, 7, 0, 1)) == ALLOW
    assert evaluate(flt, nr["prlimit64"], (4241, 7, 1, 0)) == EPERM
    if arch == "x86_64":
        assert evaluate(flt, 0x40000000 | 39) == KILL  # x32 getpid
        assert evaluate(flt, nr["fork"]) == evaluate(flt, nr["vfork"]) == EPERM
    assert "fork" not in nr if arch == "aarch64" else True


@needs_seccomp
def test_a_filter_built_for_another_process_is_refused() -> None:
    # A template's filter in its fork child would forbid the child to signal itself (even abort()).
    with pytest.raises(SandboxError) as refused:
        seccomp.install(seccomp.worker_filter(pid=os.getpid() + 1))
    assert refused.value.errno == 22
    assert "Seccomp:\t0" in Path("/proc/self/status").read_text()  # and nothing was installed here


# --- memory ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["data", "as"])
@pytest.mark.parametrize("action", ["alloc", "alloc_bytes"])
def test_memory_cap_refuses_an_allocation_past_it(kind: str, action: str) -> None:
    capped = run(action, 512 * MiB, {**MEMORY, "memory_bytes": 256 * MiB, "memory_limit": kind})
    assert capped.refused(kind="MemoryError"), capped
    assert capped.returncode == 0  # a clean error, the child goes on
    control = run(action, 512 * MiB)
    assert control.ok, control
    assert control.outcome is not None and control.outcome["value"]["bytes"] >= 512 * MiB


def test_memory_cap_bounds_the_childs_peak_rss() -> None:
    # Under the cap the child still allocates what fits, and its peak stays below the cap.
    capped = run("alloc", 64 * MiB, {**MEMORY, "memory_bytes": 256 * MiB})
    assert capped.ok, capped
    assert capped.outcome is not None and capped.outcome["value"]["maxrss_kB"] * 1024 < 256 * MiB


@needs_landlock
@needs_seccomp
@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_a_hostile_model_cannot_allocate_past_the_cap_in_any_runtime(runtime: str) -> None:
    # 3 GiB asked for under a 512 MiB cap, in a fully confined worker: each runtime fails the call
    # with its own error, the worker lives, and its peak RSS stays under the cap.
    pytest.importorskip(RUNTIMES[runtime])
    if runtime == "ggml":
        pytest.importorskip("wasinn_backend_ggml.testing")
    confined = run("run_bomb", runtime, {**FULL, "memory_bytes": 512 * MiB})
    assert confined.returncode == 0 and confined.outcome is not None, confined
    assert confined.outcome["outcome"] == "error", confined
    assert confined.outcome["maxrss_kB"] * 1024 < 512 * MiB


def test_cgroup_probe_says_why() -> None:
    from wasinn.sandbox import cgroup
    assert cgroup.reason().startswith("cgroup v2")
    assert (cgroup.delegated() is None) == (not probe().layer("cgroup").available)


@pytest.mark.skipif(wasinn.sandbox.cgroup.delegated() is None, reason=wasinn.sandbox.cgroup.reason())
def test_cgroup_memory_max_kills_the_worker_past_it() -> None:
    from wasinn.sandbox import cgroup
    parent = cgroup.delegated()
    assert parent is not None
    group = cgroup.MemoryCgroup.create(parent, f"wasinn-test-{os.getpid()}", 128 * MiB)
    try:
        # The child waits on stdin until it is in the cgroup, then touches 512 MiB.
        script = "import sys; sys.stdin.readline(); b = bytearray(512 << 20); print('survived')"
        proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True)
        group.add(proc.pid)
        out, _ = proc.communicate("go\n", timeout=120)
        assert proc.returncode == -signal.SIGKILL and "survived" not in out
        assert group.oom_kills() >= 1
    finally:
        group.remove()


# --- files ---------------------------------------------------------------------------------------------


@needs_landlock
@pytest.mark.parametrize("where", ["tmp_path", "tmp", "cwd", "dev_shm"])
def test_files_no_write_anywhere(tmp_path: Path, where: str) -> None:
    name = f"wasinn-sandbox-marker-{os.getpid()}-{where}"
    target = {"tmp_path": str(tmp_path / name), "tmp": f"/tmp/{name}", "cwd": name, "dev_shm": f"/dev/shm/{name}"}
    path = Path(target[where]) if where != "cwd" else tmp_path / name
    if where == "dev_shm" and not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    try:
        confined = run("write", target[where], FILES, cwd=tmp_path)
        assert confined.refused(13), confined  # EACCES from Landlock
        assert not path.exists()
        control = run("write", target[where], cwd=tmp_path)
        assert control.ok, control
        assert path.exists()
    finally:
        path.unlink(missing_ok=True)


@needs_landlock
@pytest.mark.parametrize("action", ["unlink", "truncate", "rename", "mkdir"])
def test_files_no_change_to_existing_files(tmp_path: Path, action: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    target = str(tmp_path / "newdir") if action == "mkdir" else str(victim)
    confined = run(action, target, FILES)
    assert confined.refused(), confined
    assert victim.read_text() == "precious" and not (tmp_path / "newdir").exists()
    assert not (tmp_path / "victim.renamed").exists()
    assert run(action, target).ok


@needs_seccomp
@pytest.mark.parametrize("action", ["chmod", "utime"])
def test_no_change_to_file_metadata(tmp_path: Path, action: str) -> None:
    # Landlock does not cover a file's mode or times; the seccomp filter does.
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.chmod(victim, 0o600)
    before = victim.stat()
    confined = run(action, str(victim), SYSCALLS)
    assert confined.refused(1), confined
    after = victim.stat()
    assert (after.st_mode, after.st_mtime_ns) == (before.st_mode, before.st_mtime_ns)
    assert run(action, str(victim)).ok
    assert (victim.stat().st_mode, victim.stat().st_mtime_ns) != (before.st_mode, before.st_mtime_ns)


@needs_landlock
@pytest.mark.parametrize("what", ["passwd", "other_model", "listdir", "parent_environ"])
def test_files_nothing_readable_outside_the_list(tmp_path: Path, what: str) -> None:
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another guest's model")
    action, target = {"passwd": ("read", "/etc/passwd"), "other_model": ("read", str(other)),
                      "listdir": ("listdir", str(tmp_path)),
                      "parent_environ": ("read", f"/proc/{os.getpid()}/environ")}[what]
    confined = run(action, target, FILES)
    assert confined.refused(13), confined
    assert run(action, target).ok


@needs_landlock
def test_files_the_allowed_model_stays_readable(tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(b"model bytes here")
    spec = {**FILES, "read_only": [*landlock.runtime_read_paths(), str(model)]}
    confined = run("read", str(model), spec)
    assert confined.ok and confined.outcome is not None and confined.outcome["value"] == "model bytes here"
    # Readable is not writable: neither the model itself nor its directory's other files.
    assert run("write", str(model), spec).refused(13)
    assert run("write", str(tmp_path / "x"), spec).refused(13)
    assert model.read_bytes() == b"model bytes here" and not (tmp_path / "x").exists()


@needs_landlock
def test_files_a_scratch_folder_takes_files_and_nothing_else(tmp_path: Path) -> None:
    # A probe's scratch folder (Confinement.writable): files may be made, written and removed there.
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    spec = {**FILES, "writable": [str(scratch)]}
    assert run("write", str(scratch / "model.xml"), spec).ok and (scratch / "model.xml").exists()
    assert run("unlink", str(scratch / "model.xml"), spec).ok and not (scratch / "model.xml").exists()
    # No folders, and nothing outside it.
    assert run("mkdir", str(scratch / "sub"), spec).refused(13) and not (scratch / "sub").exists()
    assert run("write", str(tmp_path / "outside"), spec).refused(13) and not (tmp_path / "outside").exists()


@needs_landlock
def test_imports_still_work_after_landlock() -> None:
    # numpy is not imported before confinement: its modules and shared libraries load afterwards.
    confined = run("import", "numpy", {**FULL})
    assert confined.ok, confined
    assert confined.confined is not None and "files" in confined.confined["confined"]


@needs_landlock
@pytest.mark.parametrize("module", list(RUNTIMES.values()))
def test_an_installed_runtime_imports_after_full_confinement(module: str) -> None:
    pytest.importorskip(module)
    # A worker's environment has no HOME: OpenVINO's telemetry, imported with openvino, would read
    # a client id in ~/intel (outside the allowed paths) and fail the import.
    confined = run("import", module, {**FULL}, env={"HOME": "/nonexistent"})
    assert confined.ok, confined


@needs_landlock
@needs_seccomp
@pytest.mark.parametrize("runtime", list(RUNTIMES))
def test_a_runtime_imported_before_confinement_runs_its_model_after(runtime: str) -> None:
    pytest.importorskip(RUNTIMES[runtime])
    if runtime == "ggml":
        pytest.importorskip("wasinn_backend_ggml.testing")
    confined = run("run_model", runtime, {**FULL, "memory_bytes": 1 << 30})
    assert confined.ok, confined
    assert confined.confined is not None and set(confined.confined["confined"]) >= {"files", "syscalls", "memory"}
    assert run("run_model", runtime, {"files": False, "syscalls": False, "privileges": False}).ok


@needs_landlock
def test_landlock_refuses_a_process_with_threads_already_running() -> None:
    # A thread started before restrict_self would stay unconfined: restrict_files must refuse.
    strict = run("thread_then_confine", None, {**FILES}, must_confine=False)
    assert strict.confined is None and strict.refused(16, "SandboxError"), strict  # EBUSY
    assert strict.outcome is not None and "threads" in strict.outcome["detail"]
    lenient = run("thread_then_confine", None, {**FILES, "strict": False})
    assert lenient.confined is not None and "files" in lenient.confined["skipped"]


# --- network, processes, signals -----------------------------------------------------------------------


@needs_seccomp
@pytest.mark.parametrize("action", ["tcp", "udp", "unix", "socketpair"])
def test_no_socket_of_any_kind(listener: int, action: str) -> None:
    for spec in (SYSCALLS, FULL):
        confined = run(action, listener, spec)
        assert confined.refused(1), (spec, confined)
    assert run(action, listener).ok


@needs_seccomp
@pytest.mark.parametrize("action", ["fork", "subprocess", "posix_spawn"])
def test_no_new_process(action: str) -> None:
    for spec in (SYSCALLS, FULL):
        confined = run(action, None, spec)
        assert confined.refused(1), (spec, confined)
    assert run(action).ok


@needs_seccomp
def test_no_exec() -> None:
    confined = run("exec", None, FULL)
    assert confined.refused(1), confined
    assert confined.returncode == 0
    control = run("exec")
    assert control.returncode == 7 and control.outcome is None  # /bin/sh replaced the child


@needs_seccomp
@pytest.mark.parametrize("action", ["kill_parent", "kill_group"])
def test_no_signal_to_another_process(action: str) -> None:
    confined = run(action, None, SYSCALLS)
    assert confined.refused(1), confined
    assert run("kill_self", None, SYSCALLS).ok
    assert run(action).ok


@needs_seccomp
def test_no_prlimit_on_another_process() -> None:
    confined = run("prlimit_parent", None, SYSCALLS)
    assert confined.refused(1), confined
    assert run("prlimit_parent").ok


@needs_seccomp
def test_no_typing_into_a_terminal() -> None:
    if Path("/proc/sys/dev/tty/legacy_tiocsti").exists() and \
            Path("/proc/sys/dev/tty/legacy_tiocsti").read_text().strip() == "0" and not capable(21):
        pytest.skip("TIOCSTI is disabled on this kernel")
    confined = run("tiocsti", None, SYSCALLS)
    assert confined.refused(1), confined
    control = run("tiocsti")
    assert control.ok and control.outcome is not None and control.outcome["value"] == "x"


@needs_seccomp
@pytest.mark.parametrize("action", ["shared_anon", "memfd"])
def test_no_memory_that_rlimits_do_not_count(action: str) -> None:
    confined = run(action, None, SYSCALLS)
    assert confined.refused(1), confined
    assert run(action).ok


@needs_seccomp
@pytest.mark.parametrize("action", ["ptrace", "int80", "x32_getpid"])
def test_the_worst_calls_kill_the_worker(action: str) -> None:
    if action != "ptrace" and ARCH != "x86_64":
        pytest.skip("an x86_64 ABI trick")
    control = run(action)
    if action == "int80" and control.killed_by(signal.SIGSEGV):
        pytest.skip("this kernel runs no 32-bit code (IA32 emulation off)")
    assert control.returncode == 0 and control.outcome is not None  # ran (x32 may answer ENOSYS)
    confined = run(action, None, SYSCALLS)
    assert confined.killed_by(signal.SIGSYS), confined
    assert confined.outcome is None


@needs_seccomp
def test_threads_keep_working_under_the_filter() -> None:
    # numpy's BLAS pool and a Python thread pool, all started after confinement.
    confined = run("threads", None, {**FULL})
    assert confined.ok, confined
    assert confined.outcome is not None
    assert confined.outcome["value"]["results"] == 16 and confined.outcome["value"]["started"] == 4
    assert confined.outcome["value"]["threads_seen"] >= 2


@needs_seccomp
def test_the_filter_reaches_threads_started_before_it() -> None:
    confined = run("thread_then_confine", None, SYSCALLS)
    assert confined.ok, confined
    assert confined.outcome is not None and confined.outcome["value"]["socket"] == "EPERM"
    control = run("thread_then_confine", None, {"files": False, "syscalls": False, "privileges": False})
    assert control.outcome is not None and control.outcome["value"]["socket"] == "ok"


@pytest.mark.skipif(not capable(1), reason="needs CAP_DAC_OVERRIDE (a root worker) to have something to drop")
def test_a_root_worker_loses_roots_powers(tmp_path: Path) -> None:
    # Only the privileges layer: the file is where Landlock would not look, mode 000, owned by us.
    locked = tmp_path / "locked"
    locked.write_text("root can read this")
    locked.chmod(0)
    confined = run("read", str(locked), {**MEMORY, "privileges": True})
    assert confined.refused(13), confined
    assert run("read", str(locked)).ok


@pytest.mark.skipif(not capable(24), reason="needs CAP_SYS_RESOURCE to have something to drop")
def test_a_root_worker_cannot_raise_its_memory_cap_back() -> None:
    script = ("import json,resource,sys; from wasinn.sandbox import Confinement, confine; "
              "confine(Confinement(**json.loads(sys.argv[1]))); "
              "resource.setrlimit(resource.RLIMIT_DATA, (resource.RLIM_INFINITY,) * 2)")
    for spec, ok in (({**MEMORY, "memory_bytes": 256 * MiB, "privileges": True}, False),
                     ({**MEMORY, "memory_bytes": 256 * MiB}, True)):
        proc = subprocess.run([sys.executable, "-c", script, json.dumps(spec)], capture_output=True, text=True,
                              env=child_env(), timeout=120)
        assert (proc.returncode == 0) == ok, proc.stderr


# --- CPU -----------------------------------------------------------------------------------------------


def test_cpu_cap_stops_a_spinning_child() -> None:
    capped = run("spin", None, {**CPU, "cpu_seconds": 1})
    assert capped.killed_by(signal.SIGXCPU), capped
    # Ignoring SIGXCPU does not help: the hard limit, a second later, is SIGKILL.
    stubborn = run("spin_ignoring_xcpu", None, {**CPU, "cpu_seconds": 1})
    assert stubborn.killed_by(signal.SIGKILL), stubborn
    # Control: without the cap the same child is still spinning well past the cap and its grace.
    proc = subprocess.Popen(child_cmd("spin"), env=child_env(), stdout=subprocess.DEVNULL)
    try:
        while rlimits.cpu_seconds_of(proc.pid) < 3:
            assert proc.poll() is None
            time.sleep(0.1)
        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_cpu_budget_moves_the_soft_limit() -> None:
    script = ("import json,sys; from wasinn.sandbox import Confinement, confine, rlimits; "
              "confine(Confinement(**json.loads(sys.argv[1]))); rlimits.cpu_budget(1)\nwhile True: pass")
    proc = subprocess.run([sys.executable, "-c", script, json.dumps({**CPU, "cpu_seconds": 600})],
                          env=child_env(), timeout=300)
    assert proc.returncode == -signal.SIGXCPU


def test_limits_never_rise_above_the_current_hard_limit() -> None:
    script = ("import resource; resource.setrlimit(resource.RLIMIT_CPU, (50, 50)); "
              "from wasinn.sandbox import rlimits; rlimits.limit_cpu(100); "
              "print(resource.getrlimit(resource.RLIMIT_CPU))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=child_env(),
                         timeout=120, check=True).stdout
    assert out.strip() == "(50, 50)"
    with pytest.raises(ValueError):
        rlimits.limit_memory(0)


# --- fork from a template ------------------------------------------------------------------------------


TEMPLATE = r"""
import json, os, socket, sys, threading
import numpy  # a template imports its runtime (and may already run a BLAS thread pool)
from wasinn.sandbox import Confinement, confine
threading.Thread(target=threading.Event().wait, daemon=True).start()  # and has another thread
marker = sys.argv[1]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    report = {"threads_in_child": len(os.listdir("/proc/self/task"))}
    try:
        report["applied"] = sorted(confine(Confinement(**json.loads(sys.argv[2]))).cost_us)
        for name, attempt in (("write", lambda: open(marker, "w").close()), ("socket", socket.socket),
                              ("numpy", lambda: float(numpy.ones((300, 300)).dot(numpy.ones((300, 300))).sum()))):
            try:
                attempt()
                report[name] = "ok"
            except OSError as e:
                report[name] = e.errno
    finally:
        os.write(w, json.dumps(report).encode())
        os._exit(0)
os.close(w)
_, status = os.waitpid(pid, 0)
print(os.read(r, 65536).decode())
print(json.dumps({"template_threads": len(os.listdir("/proc/self/task")), "status": status}))
"""


@needs_landlock
@needs_seccomp
def test_a_child_forked_from_a_threaded_template_confines_itself(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    proc = subprocess.run([sys.executable, "-c", TEMPLATE, str(marker), json.dumps(FULL)], capture_output=True,
                          text=True, env=child_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr
    child, template = (json.loads(line) for line in proc.stdout.splitlines())
    assert template["template_threads"] >= 2 and template["status"] == 0
    assert child["threads_in_child"] == 1
    assert child["applied"] == ["cpu", "files", "memory", "privileges", "syscalls"]
    assert child["write"] == 13 and child["socket"] == 1 and child["numpy"] == "ok"
    assert not marker.exists()


# --- confine() ---------------------------------------------------------------------------------------


def test_confine_reports_the_cost_of_each_layer() -> None:
    confined = run("nothing", None, {**FULL})
    assert confined.ok and confined.confined is not None
    costs = confined.confined["confined"]
    expected = {"privileges", "memory", "cpu", "files", "syscalls"}
    assert set(costs) == expected - ({"files"} if LANDLOCK < 1 else set()) - ({"syscalls"} if not SECCOMP else set())
    assert all(us > 0 for us in costs.values())


def test_sandbox_error_is_an_oserror() -> None:
    assert issubclass(SandboxError, OSError)
    assert Confinement().strict is True
