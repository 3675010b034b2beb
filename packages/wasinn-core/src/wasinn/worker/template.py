"""The template process of one backend, and the worker it forks for each untrusted graph.

Started by the host as ``python -I -c BOOT <sys.path as JSON> <fd>`` with a minimal environment and
nothing open but its control socket. It imports the backend (and, through the backend's optional
``devices`` hook, its runtime), freezes what it imported, and then only forks: one child per graph
the host asks for, handed the socket the host made for it. The template never sees a model byte.

A worker (the fork child) has one thread, whatever the template had, so it can confine itself
(:func:`wasinn.sandbox.confine`) once it knows its memory cap (the first message, ``load``) and
before it reads a byte of the model. It then serves the backend's hooks for that one graph and its
contexts, one request at a time, and exits when the graph is unloaded or the host goes.
"""

from __future__ import annotations

import gc
import importlib
import json
import logging
import mmap
import os
import select
import shutil
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

from wasinn.worker import protocol

#: What the host runs: restore the host's ``sys.path``, then :func:`main`.
BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
        "from wasinn.worker.template import main; main(int(sys.argv[2]))")

_PR_SET_PDEATHSIG = 1

#: The file suffix a runtime may insist on for each format (OpenVINO reads TFLite only from a path
#: ending in ``.tflite``): a worker's model is read through a name with it (:func:`model_links`).
SUFFIXES = {"tflite": ".tflite", "onnx": ".onnx", "gguf": ".gguf", "torchscript": ".pt", "torch-export": ".pt2",
            "whisper": ".bin"}


def model_links() -> tuple[str, int] | None:
    """A private folder (0700) of symlinks ``model<suffix>`` -> ``/proc/self/fd/<N>``, and ``N``: a
    descriptor the template keeps open on /dev/null, so that no other file takes that number. A worker
    moves its model's memfd to ``N`` and so reads its own model through a name with the format's
    suffix, writing nothing. The folder holds links only, never a byte of a model. ``None`` where it
    cannot be made (the model then has only its ``/proc/self/fd`` path)."""
    try:
        reserved = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        folder = tempfile.mkdtemp(prefix="wasinn-worker-")
        for suffix in ("", *SUFFIXES.values()):
            os.symlink(f"/proc/self/fd/{reserved}", os.path.join(folder, "model" + suffix))
    except OSError:
        return None
    return folder, reserved


def load_plugin(spec: list[str]) -> object:
    """The backend object the host registered, from its description (see ``proxy.plugin_spec``)."""
    kind, module_name = spec[0], spec[1]
    module = importlib.import_module(module_name)
    if kind == "module":
        return module
    target: Any = module
    for part in spec[2].split("."):
        target = getattr(target, part)
    return target() if kind == "class" else target


def main(fd: int) -> None:
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the host's Ctrl-C is the host's to handle
    boot, _ = protocol.recv_host_message(sock)
    name, spec = boot["name"], boot["plugin"]
    from wasinn.plugins import BackendRegistry
    from wasinn.sandbox import runtime_read_paths

    started = time.perf_counter()
    hooks: dict[str, Callable[..., Any]] = {}
    unavailable = None
    if spec is None:  # a probe template: the runtime's modules, imported once for every probe
        for module in boot.get("preload", ()):
            try:
                importlib.import_module(module)
            except Exception:
                pass  # the probe's own import says why
    else:
        backend = BackendRegistry().register(name, load_plugin(spec))
        hooks, unavailable = backend.hooks, backend.unavailable
        devices = backend.hook("devices")
        if devices is not None:  # imports the runtime here, once, rather than in every worker
            try:
                devices()
            except Exception:
                pass
    read_paths = runtime_read_paths()
    links = model_links()
    gc.collect()
    gc.freeze()  # what the template holds is never collected again: fewer copy-on-write faults
    protocol.reply(sock, [protocol.OK, {"pid": os.getpid(), "import_ms": (time.perf_counter() - started) * 1000,
                                        "data_bytes": _data_bytes(),
                                        "unavailable": unavailable}])
    children: dict[int, int] = {}  # pid -> wait status, once reaped
    live: set[int] = set()

    def reap_exited(*_: object) -> None:
        # Collect every worker that has exited, so none stays a zombie until the host asks.
        for pid in list(live):
            try:
                done, status = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                live.discard(pid)
                continue
            if done:
                live.discard(pid)
                children[done] = status
        while len(children) > 4096:  # statuses the host never asked for
            children.pop(next(iter(children)))

    signal.signal(signal.SIGCHLD, reap_exited)
    while True:
        try:
            message, fds = protocol.recv_host_message(sock)
        except (EOFError, OSError):
            break
        op = message[0]
        if op == "fork":
            pid = os.fork()
            if pid == 0:
                sock.close()
                _worker(fds[0], hooks, read_paths, links)  # never returns
            live.add(pid)
            protocol.reply(sock, [protocol.OK, pid])
        elif op == "reap":
            pid = message[1]
            if pid in live:
                try:
                    _, status = os.waitpid(pid, 0)
                    children[pid] = status
                except ChildProcessError:
                    pass
                live.discard(pid)
            protocol.reply(sock, [protocol.OK, children.pop(pid, None)])
        for fd in fds:
            os.close(fd)
    # The host has gone: so do the workers.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    for pid in list(live):
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except OSError:
            pass
    if links is not None:
        shutil.rmtree(links[0], ignore_errors=True)
    os._exit(0)


def _worker(fd: int, hooks: dict[str, Callable[..., Any]], read_paths: list[str],
            links: tuple[str, int] | None) -> None:
    code = 0
    try:
        import ctypes
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)  # the template goes: so does this
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        Worker(socket.socket(fileno=fd), hooks, read_paths, links).serve()
    except BaseException:
        code = 70
    finally:
        os._exit(code)


class LogRelay(logging.Handler):
    """Keeps the log records of one call, for the host to write (a worker's stderr goes nowhere)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[list[Any]] = []
        self.dropped = 0

    def emit(self, record: logging.LogRecord) -> None:
        if len(self.records) >= protocol.MAX_LOG_RECORDS:
            self.dropped += 1
            return
        try:
            text = record.getMessage()
        except Exception:
            text = str(record.msg)
        self.records.append([record.levelno, record.name[:100], protocol.text(text)])

    def take(self) -> list[Any] | None:
        if not self.records and not self.dropped:
            return None
        message = [protocol.LOG, self.records, self.dropped]
        self.records, self.dropped = [], 0
        return message


class Worker:
    """One graph's worker: confines itself at the first message, then serves hooks until told to go."""

    def __init__(self, sock: socket.socket, hooks: dict[str, Callable[..., Any]], read_paths: list[str],
                 links: tuple[str, int] | None = None) -> None:
        self.sock = sock
        self.links = links
        self.hooks = hooks
        self.read_paths = read_paths
        self.graph: Any = None
        self.contexts: dict[int, Any] = {}
        self.next_context = 0
        self.inputs: mmap.mmap | None = None
        self.outputs: mmap.mmap | None = None
        self.cpu_seconds: float | None = None
        self.store_budget: Any = None
        self.limits: Any = None
        self.model_fd = -1
        #: The context of the call being served: what it holds goes back with an error reply too.
        self.current: Any = None
        self.relay = LogRelay()
        root = logging.getLogger()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        root.addHandler(self.relay)
        root.setLevel(logging.WARNING)  # until load says what the host writes

    def serve(self) -> None:
        from wasinn.errors import WasiNnError
        poller = protocol.Poller(self.sock)
        waited = 0.0
        while True:
            # The host's next call often follows soon (the guest's next inference): poll first.
            started = time.perf_counter()
            if not poller.spin(poller.window(waited)):
                select.select([self.sock], [], [])
            waited = time.perf_counter() - started
            try:
                message, fds = protocol.recv_host_message(self.sock)
            except (EOFError, ConnectionError):
                return
            op = message[0]
            self.current = None
            try:
                answer = getattr(self, "op_" + op)(message, fds)
            except WasiNnError as exc:
                answer = [protocol.ERROR, exc.code.name, protocol.text(exc.message), self._still_held()]
            except Exception as exc:
                answer = [protocol.EXCEPTION, type(exc).__name__, protocol.text(exc), self._still_held()]
            finally:
                for fd in fds:
                    try:
                        os.close(fd)
                    except OSError:
                        pass
            logs = self.relay.take()
            if logs is not None:
                protocol.reply(self.sock, logs)
            protocol.reply(self.sock, answer)
            if op in ("unload", "probe"):
                return

    def _still_held(self) -> int | None:
        return self._held(self.current) if self.current is not None else None

    def _held(self, context: Any) -> int:
        return int(context.budget.held) if context is not None else 0

    # -- the graph ----------------------------------------------------------------------------------
    def op_load(self, message: tuple[Any, ...], fds: list[int]) -> list[Any]:
        from wasinn.budget import StoreBudget
        from wasinn.sandbox import Confinement, confine

        _, model, sizes, hw, spec, cpu_seconds, log_level = message
        logging.getLogger().setLevel(log_level)
        confinement: Confinement = spec
        if confinement.files and confinement.read_only is None:
            from dataclasses import replace
            # The model's own file too: a runtime that maps it opens it again by its path, and
            # Landlock allows that file (by its inode: it has no name) and nothing beside it.
            confinement = replace(confinement, read_only=[*self.read_paths, f"/proc/self/fd/{fds[0]}"])
        applied = confine(confinement)  # before a byte of the model is read
        self.cpu_seconds = cpu_seconds
        builders = []
        offset = 0
        for size in sizes:  # the one copy into this process (backends take bytes)
            builders.append(_pread_all(fds[0], size, offset))
            offset += size
        from dataclasses import replace as _replace
        from pathlib import Path

        # A runtime that maps its model from a file (llama.cpp) reads the model's file by its path
        # (the worker cannot write one of its own); it stays open with the graph.
        self.model_fd = fds.pop(0)
        paths = (Path(f"/proc/self/fd/{self.model_fd}"),) if len(sizes) == 1 else None
        if paths is not None and self.links is not None:
            # The same file, by a name with the format's suffix (see model_links).
            folder, number = self.links
            os.dup2(self.model_fd, number, inheritable=False)
            paths = (Path(folder) / ("model" + SUFFIXES.get(str(model.format), "")),)
        model = _replace(model, builders=tuple(builders), paths=paths)
        self.limits = model.limits
        self._cpu()
        self.graph = self.hooks["load"](model, hw)
        # What the contexts may hold together: the store's limit, or what the memory cap leaves
        # after the model is loaded, whichever is less (so that a context the cap cannot hold is
        # refused by the backend's own accounting, as too_large, rather than failing inside the runtime).
        cap = confinement.memory_bytes
        room = cap - _data_bytes() if cap else None
        if cap and room is not None and room < model.limits.max_runtime_bytes_per_store:
            self.store_budget = StoreBudget(max(room, 0), "what the worker's memory cap leaves after the runtime "
                                                          "and the model, Limits.worker_memory_bytes")
        else:
            self.store_budget = StoreBudget(model.limits.max_runtime_bytes_per_store)
        from wasinn.hookspecs import Graph
        if not isinstance(self.graph, Graph):
            raise TypeError(f"load returned {type(self.graph).__name__}, not Graph")
        specs = [[_spec(s) for s in self.graph.inputs], [_spec(s) for s in self.graph.outputs]]
        return [protocol.OK, {"inputs": specs[0], "outputs": specs[1], "device": str(self.graph.device),
                              "skipped": applied.skipped}, 0]

    def op_unload(self, message: tuple[Any, ...], fds: list[int]) -> list[Any]:
        for context in list(self.contexts.values()):
            self._finalize(context)
        self.contexts.clear()
        unload = self.hooks.get("unload")
        if unload is not None and self.graph is not None:
            unload(graph=self.graph)
        return [protocol.OK, None, 0]

    # -- a probe (wasinn.isolation.ChildProbe) ----------------------------------------------------------
    def op_probe(self, message: tuple[Any, ...], fds: list[int]) -> list[Any]:
        """Run a backend's probe script on a model in this process, confined as a worker is (plus the
        paths the probe reads and the scratch folders it writes), then exit: ``[OK, exit status, last
        line of its stderr]``. A crash ends the process; the host reads it from the wait status."""
        import io
        from dataclasses import replace

        from wasinn.sandbox import confine

        _, script, args, read, writable, spec, has_stdin = message
        stdin = fds.pop(0) if has_stdin else os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        confine(replace(spec, read_only=[*self.read_paths, *read], writable=list(writable)))
        sys.argv = ["-c", *args]
        sys.stdin = io.TextIOWrapper(io.FileIO(stdin, "rb"))
        errors = io.StringIO()
        sys.stderr = errors  # what the script says about itself (a runtime's own stderr goes nowhere)
        code = 0
        try:
            exec(compile(script, "<probe>", "exec"), {"__name__": "__main__"})
        except SystemExit as exc:
            if isinstance(exc.code, str):
                errors.write(exc.code + "\n")
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
        except BaseException as exc:  # as an interpreter does: exit status 1
            errors.write(f"{type(exc).__name__}: {exc}\n")
            code = 1
        tail = errors.getvalue().strip().splitlines()[-1:] or [""]
        return [protocol.OK, code, protocol.text(tail[0])]

    # -- contexts -------------------------------------------------------------------------------------
    def op_init(self, message: tuple[Any, ...], fds: list[int]) -> list[Any]:
        from wasinn.budget import ContextBudget
        from wasinn.hookspecs import Context

        context = self.hooks["init_execution_context"](self.graph)
        if not isinstance(context, Context):
            raise TypeError(f"init_execution_context returned {type(context).__name__}, not Context")
        budget = ContextBudget(self.limits.max_runtime_bytes_per_context, self.store_budget)
        context.budget.move_to(budget)
        context.budget = budget
        handle = self.next_context
        self.next_context += 1
        self.contexts[handle] = context
        return [protocol.OK, handle, self._held(context)]

    def _finalize(self, context: Any) -> None:
        finalize = self.hooks.get("finalize_execution_context")
        try:
            if finalize is not None:
                finalize(context=context)
        finally:
            context.budget.release()

    def op_fini(self, message: tuple[Any, ...], fds: list[int]) -> list[Any]:
        context = self.contexts.pop(message[1])
        self._finalize(context)
        return [protocol.OK, None, 0]

    def op_buffers(self, message: tuple[Any, ...], fds: list[int]) -> list[Any]:
        _, in_size, out_size = message
        it = iter(fds)
        if in_size:
            self.inputs = protocol.map_fd(next(it), in_size, write=False)
        if out_size:
            self.outputs = protocol.map_fd(next(it), out_size, write=True)
        return [protocol.OK, None, 0]

    def _apply(self, context: Any, pending: list[Any]) -> None:
        """The context's inputs the host wrote into the input buffer (at their offsets), handed to
        the backend's ``set_input`` in the order the guest set them."""
        from wasinn.enums import TensorType
        from wasinn.tensor import checked_tensor

        set_input = self.hooks["set_input"]
        for index, dtype, shape, offset, nbytes in pending:
            assert self.inputs is not None
            view = memoryview(self.inputs)[offset:offset + nbytes]
            try:
                set_input(context, index, checked_tensor(TensorType(dtype), tuple(shape), view))
            finally:
                view.release()

    def op_set_input(self, message: tuple[Any, ...], fds: list[int]) -> list[Any]:
        _, handle, pending = message
        context = self.current = self.contexts[handle]
        self._apply(context, pending)
        return [protocol.OK, None, self._held(context)]

    def _cpu(self) -> None:
        if self.cpu_seconds is not None:
            from wasinn.sandbox import rlimits
            rlimits.cpu_budget(self.cpu_seconds)

    def op_compute(self, message: tuple[Any, ...], fds: list[int]) -> list[Any]:
        _, handle, hook, pending, eager = message
        context = self.current = self.contexts[handle]
        self._apply(context, pending)
        self._cpu()
        self.hooks[hook](context)  # compute, compute_single, fini_single
        outputs = self._eager(context, eager) if eager is not None else []
        return [protocol.OK, outputs, self._held(context)]

    def _eager(self, context: Any, hook: str) -> list[list[Any]]:
        """Every output that fits, copied into the output buffer now, described as ``[index, dtype,
        shape, offset]``: the host answers ``get_output`` for them without a round trip. An output
        the backend refuses here is left out (the host asks for it, and gets the error, if the guest
        does)."""
        import numpy as np

        if self.outputs is None or self.graph is None:
            return []
        room = min(len(self.outputs), protocol.EAGER_BYTES)
        offset = 0
        described: list[list[Any]] = []
        for index in range(len(self.graph.outputs)):
            try:
                result = self.hooks[hook](context, index)
            except Exception:
                continue
            if not isinstance(result, np.ndarray) or result.dtype.str not in protocol.DTYPES or \
                    offset + result.nbytes > room:
                continue
            described.append([index, *self._place(result, offset), offset])
            offset = protocol.align(offset + result.nbytes)
        return described

    def op_get_output(self, message: tuple[Any, ...], fds: list[int]) -> list[Any]:
        import numpy as np

        _, handle, index, hook, pending = message
        context = self.current = self.contexts[handle]
        self._apply(context, pending)
        result = self.hooks[hook](context, index)
        if not isinstance(result, np.ndarray):
            raise TypeError(f"{hook} returned {type(result).__name__}, not an ndarray")
        if result.dtype.str not in protocol.DTYPES:
            raise TypeError(f"{hook} returned an array of dtype {result.dtype}")
        nbytes = result.nbytes
        if self.outputs is None or nbytes > len(self.outputs):
            return [protocol.NEED, nbytes]
        return [protocol.OK, self._place(result, 0), self._held(context)]

    def _place(self, result: Any, offset: int) -> list[Any]:
        """Copy an output into the output buffer at ``offset`` (it fits); its ``[dtype, shape]``."""
        import numpy as np

        assert self.outputs is not None
        target = np.frombuffer(self.outputs, dtype=result.dtype, count=result.size, offset=offset)
        np.copyto(target.reshape(result.shape), result, casting="no")
        return [result.dtype.str, list(result.shape)]


def _data_bytes() -> int:
    """This process's data segment now (``VmData``: what ``RLIMIT_DATA`` counts). In the template: what
    the runtime's import already holds, which every worker forked from it starts with."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmData:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _pread_all(fd: int, size: int, offset: int) -> bytes:
    parts = []
    while size:
        part = os.pread(fd, min(size, 1 << 30), offset)
        if not part:
            raise EOFError("the model file is shorter than announced")
        parts.append(part)
        size -= len(part)
        offset += len(part)
    return b"".join(parts)


def _spec(spec: Any) -> list[Any]:
    return [str(spec.name), spec.dtype.value if spec.dtype is not None else None,
            None if spec.shape is None else [None if d is None else int(d) for d in spec.shape],
            bool(spec.any_length), bool(spec.optional)]


def _dump(value: object) -> str:  # for debugging a template from a shell
    return json.dumps(value)


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run by wasinn.worker.proxy")
