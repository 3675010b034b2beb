"""A child process for test_sandbox.py: confine itself as told, then try one thing a hostile model would.

    python child.py '{"confine": {...Confinement fields...} | null, "action": "...", "arg": ...}'

It prints one JSON line before it tries (``{"confined": ...}``) and one after (``{"outcome": "ok", ...}``
or ``{"outcome": "error", "type": "PermissionError", "errno": 1}``). Being killed (a signal) is the
third possible outcome, which the parent reads from the exit status.
"""

from __future__ import annotations

import ctypes
import errno
import json
import mmap
import os
import resource
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


def say(**fields: object) -> None:
    sys.stdout.write(json.dumps(fields, default=lambda o: type(o).__name__) + "\n")
    sys.stdout.flush()


def alloc(nbytes: int) -> object:
    import numpy as np
    block = np.ones(nbytes // 8)  # touched: every page is written
    return {"bytes": int(block.nbytes), "maxrss_kB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def alloc_bytes(nbytes: int) -> object:
    chunks = [bytearray(64 << 20) for _ in range(nbytes // (64 << 20))]
    return {"bytes": sum(len(c) for c in chunks)}


def write(path: str) -> object:
    with open(path, "w") as f:
        f.write("written by a confined child\n")
    return path


def tcp(port: int) -> object:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"hello")
    return port


def udp(port: int) -> object:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(b"hello", ("127.0.0.1", port))
    return port


def exec_sh(_: object) -> object:
    os.execv("/bin/sh", ["sh", "-c", "exit 7"])


def fork(_: object) -> object:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def spin(_: object) -> object:
    n = 0
    while True:
        n += 1


def spin_ignoring_xcpu(_: object) -> object:
    import signal
    signal.signal(signal.SIGXCPU, signal.SIG_IGN)  # a model's code that shrugs off the soft limit
    return spin(None)


def threads(_: object) -> object:
    import numpy as np
    a = np.random.default_rng(0).random((600, 600))
    with ThreadPoolExecutor(max_workers=8) as pool:
        sums = list(pool.map(lambda i: float((a @ a).sum()) + i, range(16)))
    started = []
    for _ in range(4):
        t = threading.Thread(target=lambda: started.append(threading.get_native_id()))
        t.start()
        t.join()
    return {"results": len(sums), "threads_seen": len(os.listdir("/proc/self/task")), "started": len(set(started))}


def import_module(name: str) -> object:
    module = __import__(name)
    if name == "numpy":
        return float(module.ones((64, 64)).sum())
    return getattr(module, "__version__", name)


def int80_getpid(_: object) -> object:
    # mov eax, 20 (i386 getpid); int 0x80; ret: the 32-bit syscall table, reached from a 64-bit process.
    code = bytes([0xB8, 0x14, 0, 0, 0, 0xCD, 0x80, 0xC3])
    buf = mmap.mmap(-1, mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS,
                    prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    buf.write(code)
    addr = ctypes.addressof(ctypes.c_char.from_buffer(buf))
    return int(ctypes.CFUNCTYPE(ctypes.c_int)(addr)())


def libc_syscall(nr: int) -> object:
    libc = ctypes.CDLL(None, use_errno=True)
    res = libc.syscall(ctypes.c_long(nr), 0, 0, 0)
    if res == -1:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(res)


def thread_then_confine(_: object) -> object:
    """A thread started *before* confinement tries the network and a file afterwards."""
    go, done = threading.Event(), threading.Event()
    result: dict[str, Any] = {}

    def early() -> None:
        go.wait()
        attempts: tuple[tuple[str, Callable[[], object]], ...] = (
            ("socket", lambda: socket.socket().close()), ("read", lambda: open("/etc/hostname").close()))
        for name, attempt in attempts:
            try:
                attempt()
                result[name] = "ok"
            except OSError as e:
                result[name] = errno.errorcode.get(e.errno or 0, str(e.errno))
        done.set()

    threading.Thread(target=early, daemon=True).start()
    apply(SPEC["confine"])
    go.set()
    done.wait(30)
    return result


def run_model(runtime: str) -> object:
    """The template's way: import the runtime and write the model file (this process is the template,
    with its runtime's threads), fork, and in the fork child (one thread) confine, load and run it.
    The template exits with the fork child's status; only the fork child reports."""
    import tempfile

    import measure  # beside this script

    from wasinn.sandbox import runtime_read_paths
    tmp = tempfile.mkdtemp()
    run = (measure.hostile if SPEC["action"] == "run_bomb" else measure.workload)(runtime, tmp)
    pid = os.fork()
    if pid == 0:
        try:
            apply({**SPEC["confine"], "read_only": runtime_read_paths(measure.BIRDS, tmp)})
            value = run()
            say(outcome="ok", value=value, maxrss_kB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        except BaseException as e:
            say(outcome="error", type=type(e).__name__, errno=getattr(e, "errno", None), detail=str(e)[:300],
                maxrss_kB=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    os._exit(os.waitstatus_to_exitcode(status) & 0xFF)


def tiocsti(_: object) -> object:
    import fcntl
    import termios
    parent, child = os.openpty()
    fcntl.ioctl(child, termios.TIOCSTI, b"x")
    return os.read(parent, 1).decode()


ACTIONS: dict[str, Callable[[Any], object]] = {
    "nothing": lambda _: None,
    "alloc": alloc,
    "alloc_bytes": alloc_bytes,
    "write": write,
    "read": lambda p: open(p).read(16),
    "listdir": lambda p: len(os.listdir(p)),
    "unlink": os.unlink,
    "mkdir": os.mkdir,
    "rename": lambda p: os.rename(p, p + ".renamed"),
    "truncate": lambda p: os.truncate(p, 0),
    "chmod": lambda p: os.chmod(p, 0o777),
    "utime": lambda p: os.utime(p, (0, 0)),
    "tcp": tcp,
    "udp": udp,
    "unix": lambda _: socket.socket(socket.AF_UNIX).close(),
    "socketpair": lambda _: len(socket.socketpair()),
    "exec": exec_sh,
    "fork": fork,
    "subprocess": lambda _: subprocess.run(["/bin/true"], check=True).returncode,
    "posix_spawn": lambda _: os.waitpid(os.posix_spawn("/bin/true", ["true"], {}), 0)[1],
    "kill_parent": lambda _: os.kill(os.getppid(), 0),
    "kill_group": lambda _: os.kill(0, 0),
    "kill_self": lambda _: os.kill(os.getpid(), 0),
    "shared_anon": lambda _: len(mmap.mmap(-1, 1 << 20)),
    "memfd": lambda _: os.close(os.memfd_create("x")),
    "ptrace": lambda _: libc_syscall(101 if os.uname().machine == "x86_64" else 117),
    "x32_getpid": lambda _: libc_syscall(0x40000000 | 39),
    "int80": int80_getpid,
    "spin": spin,
    "spin_ignoring_xcpu": spin_ignoring_xcpu,
    "threads": threads,
    "import": import_module,
    "thread_then_confine": thread_then_confine,
    "run_model": run_model,
    "run_bomb": run_model,
    "tiocsti": tiocsti,
    "prlimit_parent": lambda _: resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE),
}
#: Actions that confine the child themselves, after their own preparation.
SELF_CONFINING = ("thread_then_confine", "run_model", "run_bomb")


def apply(spec: dict[str, Any] | None) -> None:
    if spec is None:
        return
    from wasinn.sandbox import Confinement, confine
    done = confine(Confinement(**spec))
    say(confined=done.cost_us, skipped=done.skipped)


SPEC: dict[str, Any] = json.loads(sys.argv[1])

if __name__ == "__main__":
    action = ACTIONS[SPEC["action"]]
    if SPEC["action"] not in SELF_CONFINING:
        apply(SPEC.get("confine"))
    try:
        value = action(SPEC.get("arg"))
    except MemoryError as e:
        say(outcome="error", type="MemoryError", errno=None, detail=str(e)[:200])
    except OSError as e:
        say(outcome="error", type=type(e).__name__, errno=e.errno, detail=str(e)[:200])
    else:
        say(outcome="ok", value=value)
