"""Host side of a probe: a backend's script run on a model in a confined process forked from a template.

This is how :class:`wasinn.isolation.ChildProbe` runs (the in-process policy's crash guard for models
a runtime may abort on): the same template, fork, confinement and wire as a graph's worker, with a
probe template that has the runtime's modules imported once (no interpreter start per probe), the
model's bytes as an unnamed read-only file on the script's stdin, and only the paths the probe names
readable (and its scratch folders writable). What the script does cannot reach the host: not its
crash, not its allocations (the worker's memory cap), not its files or sockets.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wasinn.sandbox import Confinement
from wasinn.worker import protocol
from wasinn.worker.proxy import kill, memory_cap, probe_template

__all__ = ["ProbeResult", "ProbeTimeout", "run_probe"]


class ProbeTimeout(Exception):
    """The probe did not finish in time (it was killed)."""


@dataclass(frozen=True)
class ProbeResult:
    #: The exit status, or minus the signal that ended the process (as ``subprocess`` reports it).
    returncode: int
    #: The last line the script wrote to its ``sys.stderr`` (bounded; the host escapes it).
    detail: str
    #: The process's memory cap (beyond the template's import), for a message about a crash.
    memory_cap: int


def run_probe(script: str, args: Sequence[str], stdin: bytes | None, *, runtime_bytes: int, timeout_s: float,
              read: Sequence[str] = (), writable: Sequence[str] = (), preload: Sequence[str] = ()) -> ProbeResult:
    """Run ``script`` (Python source; ``sys.argv[1:]`` is ``args``, ``sys.stdin`` reads ``stdin``) in a
    process forked from the probe template with ``preload`` imported, confined as a graph's worker is
    (its memory cap: :func:`~wasinn.worker.proxy.memory_cap` of ``runtime_bytes`` and the model's size,
    ``stdin`` and the files in ``read``), reading only the runtime's files and ``read``, writing only in
    ``writable``. Raises :class:`ProbeTimeout` past ``timeout_s``, ``WasiNnError`` or ``OSError`` when
    no process could be started."""
    cap = memory_cap(runtime_bytes, (len(stdin) if stdin is not None else 0) + sum(_size(path) for path in read))
    made = probe_template(tuple(preload))
    pid, sock = made.fork()
    answer: list[Any] | None = None
    ended = False  # the process answered or died before the deadline (else it is killed)
    pidfd = -1
    fds: list[int] = []
    try:
        pidfd = os.pidfd_open(pid)
        if stdin is not None:
            fds.append(protocol.model_file([stdin]))
        spec = Confinement(memory_bytes=made.baseline + cap, files=True, syscalls=True, privileges=True,
                           strict=False)
        protocol.send(sock, ("probe", script, list(args), list(read), list(writable), spec, stdin is not None),
                      fds)
        answer, ended = _answer(sock, time.monotonic() + timeout_s)
    finally:
        for fd in fds:
            os.close(fd)
        sock.close()
        if pidfd >= 0:
            if not ended:  # late, or the host failed mid-way: the probe does not outlive the call
                kill(pidfd)
            os.close(pidfd)
        status = made.reap(pid)  # the process exits after its one probe: this waits for that
    if not ended:
        raise ProbeTimeout
    exited_cleanly = status is not None and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    if exited_cleanly and answer is not None and answer[0] == protocol.OK and len(answer) == 3 and \
            type(answer[1]) is int:
        return ProbeResult(answer[1], protocol.text(answer[2]), cap)
    if status is not None and os.WIFSIGNALED(status):
        return ProbeResult(-os.WTERMSIG(status), "", cap)
    if status is not None and os.WIFEXITED(status):  # it ended without a word (os._exit in the script)
        return ProbeResult(os.WEXITSTATUS(status), "", cap)
    return ProbeResult(1, "the probe process ended in an unknown way", cap)


def _answer(sock: socket.socket, deadline: float) -> tuple[list[Any] | None, bool]:
    """The probe's reply (``None`` when the process ended, or sent nonsense, without one), and whether
    it came (or the process ended) before ``deadline``. Log records a probe relays are dropped (its
    stderr goes nowhere either)."""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None, False
        if not select.select([sock], [], [], remaining)[0]:
            continue
        try:
            answer = protocol.recv_reply(sock)
        except (EOFError, ConnectionError, ValueError):
            return None, True
        if answer[0] != protocol.LOG:
            return answer, True


def _size(path: str) -> int:
    try:
        return os.path.getsize(path) if os.path.isfile(path) else 0
    except OSError:
        return 0
