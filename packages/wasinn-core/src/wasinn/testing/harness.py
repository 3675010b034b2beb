"""The conformance kit's machinery, usable on its own in a backend's tests.

:class:`KitHarness` builds hosts that know exactly one backend (found through its entry point),
spies on the backend's lifecycle hooks, captures what wasinn logs, and hands out *drivers* that run
the wasi-nn operations: :class:`GuestDriver` through a real wasm guest (the trampoline of
:mod:`wasinn.testing.guest`, so every byte crosses the ABI), :class:`StateDriver` through the
embedder API for the tensor types no guest numbering can express. Every operation returns an
:class:`Outcome` (the symbolic error code, or success), and the ``expect_*`` helpers turn a wrong
outcome into an assertion message that names the operation, the error code and errno, what was
expected, and what wasinn logged about it.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import wasmtime

from wasinn.abi.profiles import PROFILES, AbiProfile
from wasinn.enums import ErrorCode, ExecutionTarget, GraphEncoding, ModelFormat, TensorType
from wasinn.errors import WasiNnError
from wasinn.hardware import Hardware
from wasinn.hookspecs import Context, Graph
from wasinn.host.host import WasiNnHost
from wasinn.limits import Limits
from wasinn.plugins import Backend
from wasinn.tensor import Tensor
from wasinn.testing.guest import TrampolineGuest

__all__ = [
    "FOREIGN_SAMPLES",
    "GuestDriver",
    "HookSpy",
    "KitHarness",
    "LogCapture",
    "Outcome",
    "StateDriver",
    "abi_for",
    "bf16_to_f32",
    "f32_to_bf16",
    "import_report",
    "sample_input",
]

#: The physical targets a guest can name (``auto`` is WasmEdge's "host decides", not a device).
ALL_TARGETS = (ExecutionTarget.CPU, ExecutionTarget.GPU, ExecutionTarget.TPU)


# -- outcomes and readable expectations ---------------------------------------------------------
@dataclass(frozen=True)
class Outcome:
    """What one operation gave: ``code`` is ``None`` on success; ``value`` is the new handle or the
    byte count written (also set with ``too_large``: the size the guest would need)."""

    operation: str
    code: ErrorCode | None
    value: int | None = None
    detail: str = ""
    errno: int | None = None

    @property
    def ok(self) -> bool:
        return self.code is None

    def describe(self) -> str:
        if self.code is None:
            return "success"
        errno = f" (errno {self.errno})" if self.errno is not None else ""
        return f"{self.code.value}{errno}"

    def said(self) -> str:
        return f"; wasinn said: {self.detail}" if self.detail else ""


def expect_ok(outcome: Outcome, what: str = "") -> int:
    """Assert success; return the handle (or byte count). ``what`` says what was being done."""
    where = f" ({what})" if what else ""
    assert outcome.ok, f"{outcome.operation}{where}: expected success, got {outcome.describe()}{outcome.said()}"
    return outcome.value if outcome.value is not None else -1


def expect_error(outcome: Outcome, codes: ErrorCode | Sequence[ErrorCode] | None, what: str = "") -> None:
    """Assert failure with one of ``codes`` (any error code when ``None``)."""
    where = f" ({what})" if what else ""
    wanted = [codes] if isinstance(codes, ErrorCode) else list(codes or [])
    names = " or ".join(c.value for c in wanted) or "an error"
    assert not outcome.ok, f"{outcome.operation}{where}: expected {names}, got success"
    assert not wanted or outcome.code in wanted, \
        f"{outcome.operation}{where}: expected {names}, got {outcome.describe()}{outcome.said()}"


# -- tensors -----------------------------------------------------------------------------------------
def f32_to_bf16(values: np.ndarray) -> np.ndarray:
    """float32 → bfloat16 bit patterns (``<u2``), rounding to nearest even."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype("<u2")


def bf16_to_f32(bits: np.ndarray) -> np.ndarray:
    """bfloat16 bit patterns (``<u2``) → float32."""
    return (np.asarray(bits, dtype=np.uint32) << 16).view(np.float32)


def sample_input(dtype: TensorType, shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """Small, exactly representable values for ``dtype`` (different for each ``seed``), as the raw
    ndarray a guest sends (for bf16: ``<u2`` bit patterns)."""
    count = math.prod(shape)
    base = (np.arange(count, dtype=np.int64) * 3 + seed * 5) % 11  # 0..10
    if dtype in (TensorType.F16, TensorType.F32, TensorType.F64, TensorType.BF16):
        values = base.astype(np.float64) * 0.25 - 1.0  # quarters in [-1, 1.5]: exact in every float type
        if dtype is TensorType.BF16:
            return f32_to_bf16(values.astype(np.float32)).reshape(shape)
        return values.astype(dtype.numpy_dtype).reshape(shape)
    if dtype is TensorType.I8 or dtype in (TensorType.I32, TensorType.I64):
        return (base - 5).astype(dtype.numpy_dtype).reshape(shape)
    return base.astype(dtype.numpy_dtype).reshape(shape)


def decode(dtype: TensorType, raw: bytes, shape: Sequence[int]) -> np.ndarray:
    """Output bytes as an ndarray of ``shape`` (bf16 decoded to float32)."""
    array = np.frombuffer(raw, dtype=dtype.numpy_dtype).reshape(tuple(shape))
    return bf16_to_f32(array) if dtype is TensorType.BF16 else array


def logical(dtype: TensorType, raw: np.ndarray) -> np.ndarray:
    """What an author's ``expected(x)`` receives: the input as numbers (bf16 decoded to float32)."""
    return bf16_to_f32(raw) if dtype is TensorType.BF16 else raw


def check_values(got: np.ndarray, want: np.ndarray, rtol: float, atol: float, what: str) -> None:
    """Assert ``got`` matches ``want`` (shape, then values), naming the first mismatches."""
    want = np.asarray(want)
    assert got.shape == want.shape, f"{what}: output shape {list(got.shape)}, expected {list(want.shape)}"
    as_float = got.dtype.kind == "f" or want.dtype.kind == "f"
    g = got.astype(np.float64) if as_float else got.astype(np.int64)
    w = want.astype(np.float64) if as_float else want.astype(np.int64)
    close = np.isclose(g, w, rtol=rtol, atol=atol) if as_float else g == w
    if bool(np.all(close)):
        return
    bad = np.argwhere(~close)[:4]
    examples = ", ".join(f"at {tuple(int(i) for i in idx)}: got {g[tuple(idx)].item()!r}, "
                         f"expected {w[tuple(idx)].item()!r}" for idx in bad)
    count = int(np.count_nonzero(~close))
    raise AssertionError(f"{what}: {count} of {close.size} values differ (rtol {rtol}, atol {atol}); {examples}")


# -- what wasinn logs ----------------------------------------------------------------------------------
class LogCapture(logging.Handler):
    """Collects what the ``wasinn`` loggers say, so failures can quote wasinn's own reason."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(record.getMessage())
        except Exception:  # a bad log call must never break a test
            self.lines.append(str(record.msg))

    def mark(self) -> int:
        return len(self.lines)

    def since(self, mark: int, last: int = 3) -> str:
        return " | ".join(self.lines[mark:][-last:])

    @contextmanager
    def installed(self) -> Iterator[LogCapture]:
        """Attach to the ``wasinn`` logger, lowering it to WARNING if something (``wasinn -q``) raised it."""
        loggers = [logging.getLogger("wasinn"), logging.getLogger("wasinn.abi")]
        saved = [lg.level for lg in loggers]
        for lg in loggers:
            if lg.getEffectiveLevel() > logging.WARNING:
                lg.setLevel(logging.WARNING)
        loggers[0].addHandler(self)
        try:
            yield self
        finally:
            loggers[0].removeHandler(self)
            for lg, level in zip(loggers, saved, strict=True):
                lg.setLevel(level)


# -- hook spy ----------------------------------------------------------------------------------------------
class HookSpy:
    """Wraps a backend's lifecycle hooks in one host: which graphs and contexts the backend made are
    still alive, and whether ``unload``/``finalize_execution_context`` ever raised or were called
    twice."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Alive objects by id (held, so that an id cannot be reused while the backend still counts it).
        self.graphs: dict[int, Graph] = {}
        self.contexts: dict[int, Context] = {}
        self.problems: list[str] = []
        self.loads = 0
        self.has_unload = False
        self.has_finalize = False

    def install(self, backend: Backend) -> None:
        hooks = backend.hooks
        self.has_unload = "unload" in hooks
        self.has_finalize = "finalize_execution_context" in hooks
        load, init = hooks["load"], hooks["init_execution_context"]

        def spy_load(*args: Any, **kwargs: Any) -> Any:
            graph = load(*args, **kwargs)
            if isinstance(graph, Graph):
                with self._lock:
                    self.loads += 1
                    if self.has_unload:  # without the hook nothing is released: do not hold it either
                        self.graphs[id(graph)] = graph
            return graph

        def spy_init(*args: Any, **kwargs: Any) -> Any:
            context = init(*args, **kwargs)
            if isinstance(context, Context):
                with self._lock:
                    if self.has_finalize:
                        self.contexts[id(context)] = context
            return context

        hooks["load"], hooks["init_execution_context"] = spy_load, spy_init
        if self.has_unload:
            hooks["unload"] = self._release(hooks["unload"], "unload", "graph", self.graphs)
        if self.has_finalize:
            hooks["finalize_execution_context"] = self._release(
                hooks["finalize_execution_context"], "finalize_execution_context", "context", self.contexts)

    def _release(self, fn: Callable[..., Any], hook: str, arg: str, table: dict[int, Any]) -> Callable[..., Any]:
        def spy(*args: Any, **kwargs: Any) -> Any:
            obj = kwargs[arg] if arg in kwargs else args[0]
            with self._lock:
                if table.pop(id(obj), None) is None:
                    self.problems.append(f"{hook} was called with a {arg} that is not alive (released twice?)")
            try:
                return fn(*args, **kwargs)
            except Exception as exc:
                with self._lock:
                    self.problems.append(f"{hook} raised {type(exc).__name__}: {exc}")
                raise
        return spy

    def check_released(self, when: str) -> None:
        """Assert every graph and context the backend made has been released, and cleanly."""
        with self._lock:
            problems = list(self.problems)
            graphs = len(self.graphs) if self.has_unload else 0
            contexts = len(self.contexts) if self.has_finalize else 0
        assert not problems, f"{when}: {'; '.join(problems)}"
        assert not graphs, f"{when}: {graphs} graph(s) from load were never passed to unload"
        assert not contexts, f"{when}: {contexts} context(s) were never passed to finalize_execution_context"


# -- drivers ------------------------------------------------------------------------------------------------
class Driver(Protocol):
    """The wasi-nn operations, each returning an :class:`Outcome`."""

    def load(self, builders: Sequence[bytes], encoding: str | None,
             target: ExecutionTarget = ExecutionTarget.CPU) -> Outcome: ...
    def load_by_name(self, name: str, config: str | None = None) -> Outcome: ...
    def init_execution_context(self, graph: int) -> Outcome: ...
    def set_input(self, context: int, index: int, raw: np.ndarray, dtype: TensorType) -> Outcome: ...
    def compute(self, context: int) -> Outcome: ...
    def get_output(self, context: int, index: int, max_bytes: int) -> tuple[Outcome, bytes]: ...
    def unload(self, graph: int) -> Outcome: ...
    def finalize_execution_context(self, context: int) -> Outcome: ...
    def close(self) -> None: ...


def abi_for(dtype: TensorType | None) -> str | None:
    """The numbering profile a guest would use to send ``dtype`` (``None``: no guest can)."""
    if dtype is None or PROFILES["witx"].tensor_type_number(dtype) is not None:
        return "witx"
    if PROFILES["wamr-2.1"].tensor_type_number(dtype) is not None:
        return "wamr-2.1"  # bf16
    return None


class GuestDriver:
    """The operations through a real wasm guest in its own store of ``host`` (numbering ``abi``)."""

    def __init__(self, host: WasiNnHost, log: LogCapture, *, abi: str = "witx",
                 engine: wasmtime.Engine | None = None) -> None:
        self.guest = TrampolineGuest(host, engine, abi=abi)
        self.profile: AbiProfile = PROFILES[abi]
        self.log = log
        self._encodings = {v: k for k, v in self.profile.encodings.items()}
        self._targets = {v: k for k, v in self.profile.targets.items()}
        self._codes: dict[int, ErrorCode] = {}
        for code, errno in self.profile.errors.items():
            self._codes.setdefault(errno, code)

    @property
    def store(self) -> wasmtime.Store:
        return self.guest.store

    def _outcome(self, operation: str, errno: int, value: int | None, mark: int) -> Outcome:
        if errno == 0:
            return Outcome(operation, None, value, errno=0)
        code = self._codes.get(errno, ErrorCode.RUNTIME_ERROR)
        return Outcome(operation, code, value, self.log.since(mark), errno)

    def load(self, builders: Sequence[bytes], encoding: str | None,
             target: ExecutionTarget = ExecutionTarget.CPU) -> Outcome:
        self.guest.reset_heap()
        mark = self.log.mark()
        number = self._encodings[GraphEncoding(encoding or "autodetect")]
        call = self.guest.load(list(builders), number, self._targets[target])
        return self._outcome("load", call.errno, call.value, mark)

    def load_by_name(self, name: str, config: str | None = None) -> Outcome:
        self.guest.reset_heap()
        mark = self.log.mark()
        call = self.guest.load_by_name(name, config)
        return self._outcome("load_by_name" if config is None else "load_by_name_with_config", call.errno,
                             call.value, mark)

    def init_execution_context(self, graph: int) -> Outcome:
        self.guest.reset_heap()
        mark = self.log.mark()
        call = self.guest.init_execution_context(graph)
        return self._outcome("init_execution_context", call.errno, call.value, mark)

    def put_tensor(self, raw: np.ndarray, dtype: TensorType) -> tuple[int, int]:
        """Write a tensor record for ``raw`` into guest memory: (record pointer, data pointer)."""
        number = self.profile.tensor_type_number(dtype)
        assert number is not None, f"ABI profile {self.profile.name} has no number for {dtype.value}"
        contiguous = np.ascontiguousarray(raw)
        record = self.guest.tensor_record(contiguous.tobytes(), contiguous.shape, number)
        return record, self.guest.u32(record + 12)

    def set_input(self, context: int, index: int, raw: np.ndarray, dtype: TensorType) -> Outcome:
        self.guest.reset_heap()
        mark = self.log.mark()
        record, _ = self.put_tensor(raw, dtype)
        return self._outcome("set_input", self.guest.call("set_input", context, index, record), None, mark)

    def compute(self, context: int) -> Outcome:
        mark = self.log.mark()
        return self._outcome("compute", self.guest.call("compute", context), None, mark)

    def get_output(self, context: int, index: int, max_bytes: int) -> tuple[Outcome, bytes]:
        self.guest.reset_heap()
        mark = self.log.mark()
        call, data = self.guest.get_output_bytes(context, index, max_bytes)
        return self._outcome("get_output", call.errno, call.value, mark), data

    def unload(self, graph: int) -> Outcome:
        mark = self.log.mark()
        return self._outcome("unload", self.guest.call("unload", graph), None, mark)

    def finalize_execution_context(self, context: int) -> Outcome:
        mark = self.log.mark()
        return self._outcome("finalize_execution_context",
                             self.guest.call("finalize_execution_context", context), None, mark)

    def close(self) -> None:
        self.guest.close()


class StateDriver:
    """The operations through the embedder API (:class:`wasinn.StoreState`), for tensor types that
    no guest numbering has (i8): everything but the ABI marshalling is the same code path."""

    def __init__(self, host: WasiNnHost) -> None:
        self.state = host.new_state()

    @staticmethod
    def _run(operation: str, fn: Callable[[], Any]) -> Outcome:
        try:
            value = fn()
        except WasiNnError as error:
            return Outcome(operation, error.code, None, error.message)
        return Outcome(operation, None, value if isinstance(value, int) else None)

    def load(self, builders: Sequence[bytes], encoding: str | None,
             target: ExecutionTarget = ExecutionTarget.CPU) -> Outcome:
        return self._run("load", lambda: self.state.load(list(builders), GraphEncoding(encoding or "autodetect"),
                                                         target))

    def load_by_name(self, name: str, config: str | None = None) -> Outcome:
        parsed = json.loads(config) if config else None
        return self._run("load_by_name", lambda: self.state.load_by_name(name, parsed))

    def init_execution_context(self, graph: int) -> Outcome:
        return self._run("init_execution_context", lambda: self.state.init_execution_context(graph))

    def set_input(self, context: int, index: int, raw: np.ndarray, dtype: TensorType) -> Outcome:
        contiguous = np.ascontiguousarray(raw)
        tensor = Tensor(dtype, tuple(int(d) for d in contiguous.shape), memoryview(contiguous.tobytes()))
        return self._run("set_input", lambda: self.state.set_input(context, index, tensor))

    def compute(self, context: int) -> Outcome:
        return self._run("compute", lambda: self.state.compute(context))

    def get_output(self, context: int, index: int, max_bytes: int) -> tuple[Outcome, bytes]:
        try:
            array = self.state.get_output(context, index)
        except WasiNnError as error:
            return Outcome("get_output", error.code, None, error.message), b""
        if array.nbytes > max_bytes:
            return Outcome("get_output", ErrorCode.TOO_LARGE, array.nbytes, "buffer too small"), b""
        return Outcome("get_output", None, array.nbytes), array.tobytes()

    def unload(self, graph: int) -> Outcome:
        return self._run("unload", lambda: self.state.unload(graph))

    def finalize_execution_context(self, context: int) -> Outcome:
        return self._run("finalize_execution_context", lambda: self.state.finalize_execution_context(context))

    def close(self) -> None:
        self.state.close()


# -- the harness -----------------------------------------------------------------------------------------------
class KitHarness:
    """Hosts that know only backend ``name`` (discovered through its entry point), with spies and
    log capture; drivers for them; cleanup of everything it made.

    Use as a context manager (``with KitHarness("mybackend") as kit: ...``).
    """

    def __init__(self, name: str, *, hardware: Hardware | None = None) -> None:
        self.name = name
        self.hardware = hardware
        self.log = LogCapture()
        self.spies: list[HookSpy] = []
        self._hosts: list[WasiNnHost] = []
        self._drivers: list[Driver] = []
        self._log_cm: Any = None
        self._host: WasiNnHost | None = None

    def __enter__(self) -> KitHarness:
        self._log_cm = self.log.installed()
        self._log_cm.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for driver in reversed(self._drivers):
            try:
                driver.close()
            except Exception as exc:  # teardown must still reach the hosts and the log handler
                logging.getLogger("wasinn.testing").debug("closing a kit driver failed: %s", exc)
        self._drivers.clear()
        for host in reversed(self._hosts):
            host.close()
        self._hosts.clear()
        if self._log_cm is not None:
            self._log_cm.__exit__(None, None, None)
            self._log_cm = None

    # -- hosts ----------------------------------------------------------------------------------------
    def new_host(self, *, forced: bool = False) -> WasiNnHost:
        """A host with only this backend (``forced``: as ``--backend NAME``), its hooks spied on."""
        # In-process: the kit checks the backend's own hooks (spied on here), not wasinn's workers.
        host = WasiNnHost(allow=[self.name], deny=(), hardware=self.hardware,
                          backend=self.name if forced else None, limits=Limits(guest_models="in-process"))
        backend = host.registry.get(self.name)
        assert backend is not None, (f"backend {self.name!r} is not installed: no entry point of that name in "
                                     f"group 'wasinn.backends'")
        assert backend.available, f"backend {self.name!r} is unavailable: {backend.unavailable}"
        spy = HookSpy()
        spy.install(backend)
        self.spies.append(spy)
        self._hosts.append(host)
        return host

    @property
    def host(self) -> WasiNnHost:
        """The default host (made on first use)."""
        if self._host is None:
            self._host = self.new_host()
        return self._host

    @property
    def backend(self) -> Backend:
        backend = self.host.registry.get(self.name)
        assert backend is not None
        return backend

    def spy_of(self, host: WasiNnHost) -> HookSpy:
        return self.spies[self._hosts.index(host)]

    # -- drivers -------------------------------------------------------------------------------------
    def driver(self, dtype: TensorType | None = None, *, host: WasiNnHost | None = None, track: bool = True,
               engine: wasmtime.Engine | None = None) -> GuestDriver | StateDriver:
        """A guest that can send ``dtype`` (a :class:`StateDriver` where no guest numbering can)."""
        abi = abi_for(dtype)
        target_host = host or self.host
        driver: GuestDriver | StateDriver
        driver = GuestDriver(target_host, self.log, abi=abi, engine=engine) if abi else StateDriver(target_host)
        if track:
            self._drivers.append(driver)
        return driver

    def guest(self, *, host: WasiNnHost | None = None, track: bool = True,
              engine: wasmtime.Engine | None = None) -> GuestDriver:
        """A witx guest (the numbering every current toolchain uses)."""
        driver = self.driver(None, host=host, track=track, engine=engine)
        assert isinstance(driver, GuestDriver)
        return driver

    def forget(self, driver: Driver) -> None:
        """Stop tracking ``driver`` (so that dropping it really drops the store)."""
        self._drivers = [d for d in self._drivers if d is not driver]


# -- samples of formats a backend does not read ------------------------------------------------------------
def _torchscript_sample() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x02}q\x00.")
        archive.writestr("model/constants.pkl", b"\x80\x02)q\x00.")
        archive.writestr("model/code/__torch__/kit.py", b"")
        archive.writestr("model/version", b"3\n")
    return buffer.getvalue()


def _torch_export_sample() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("archive/archive_format", b"pt2")
        archive.writestr("archive/models/model.json", b"{}")
    return buffer.getvalue()


#: One tiny, recognisable (not loadable) model per built-in format, for "does not score what it
#: cannot read" checks: detection accepts them, no runtime could run them.
FOREIGN_SAMPLES: dict[ModelFormat, tuple[bytes, ...]] = {
    ModelFormat.ONNX: (bytes([0x08, 0x07, 0x3A, 0x00]),),  # ir_version 7, an empty graph
    ModelFormat.TFLITE: (b"\x1c\x00\x00\x00TFL3" + bytes(24),),
    ModelFormat.GGUF: (b"GGUF\x03\x00\x00\x00" + bytes(16),),
    ModelFormat.TORCHSCRIPT: (_torchscript_sample(),),
    ModelFormat.TORCH_EXPORT: (_torch_export_sample(),),
    ModelFormat.OPENVINO_IR: (b'<?xml version="1.0"?>\n<net name="kit" version="11"><layers/><edges/></net>\n',
                              b"\x00" * 16),
}

#: Bytes no detector may claim, nor any ``detect_format`` hook raise on.
JUNK_BUILDERS: tuple[tuple[bytes, ...], ...] = (
    (b"",),
    (b"\x00" * 64,),
    (bytes(range(256)) * 4,),
    (b"PK\x03\x04" + b"\xff" * 60,),
    (b"PK\x05\x06" + bytes(18),),  # an empty zip archive
    (b"\x89HDF\r\n\x1a\n" + bytes(32),),
    (b"{}", b"{}"),
    (b"x" * 10, b"", b"y"),
)


# -- a fresh process ------------------------------------------------------------------------------------
_IMPORT_PROBE = r"""
import json, sys, time
name, heavy = sys.argv[1], json.loads(sys.argv[2])
started = time.perf_counter()
from wasinn.plugins import discover
registry = discover(allow=[name], deny=[])
report = {"discover_s": time.perf_counter() - started}
backend = registry.get(name)
report["found"] = backend is not None
report["unavailable"] = backend.unavailable if backend is not None else None
if backend is not None and "backend_info" in backend.hooks:
    started = time.perf_counter()
    for _ in range(5):
        backend.hooks["backend_info"]()
    report["backend_info_s"] = (time.perf_counter() - started) / 5
report["heavy"] = sorted(m for m in sys.modules if any(m == h or m.startswith(h + ".") for h in heavy))
print("WASINN-KIT " + json.dumps(report))
"""


def import_report(name: str, heavy_modules: Sequence[str] = (), timeout: float = 120.0) -> dict[str, Any]:
    """In a fresh interpreter (this one's ``sys.path``): discover ``name`` alone, call its
    ``backend_info`` and list which of ``heavy_modules`` got imported."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
    env.pop("WASINN_BACKENDS", None)
    env.pop("WASINN_DISABLE_BACKENDS", None)
    proc = subprocess.run([sys.executable, "-c", _IMPORT_PROBE, name, json.dumps(list(heavy_modules))],
                          capture_output=True, text=True, env=env, timeout=timeout, check=False)
    for line in proc.stdout.splitlines():
        if line.startswith("WASINN-KIT "):
            report: dict[str, Any] = json.loads(line[len("WASINN-KIT "):])
            return report
    raise AssertionError(f"the import check in a fresh interpreter failed (exit {proc.returncode}): "
                         f"{proc.stderr.strip()[-2000:]}")
