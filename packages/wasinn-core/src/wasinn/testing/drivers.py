"""The kit's drivers: the wasi-nn operations, each returning an :class:`~wasinn.testing.values.Outcome`.

* :class:`GuestDriver` runs them through a real wasm guest (the trampoline of
  :mod:`wasinn.testing.guest`, so every byte crosses the ABI) in its own store;
* :class:`StateDriver` runs them through the embedder API, for the tensor types no guest numbering
  can express (:func:`abi_for` says which numbering, if any, can send a type);
* :class:`LogCapture` collects what the ``wasinn`` loggers say, so that a failed outcome can quote
  wasinn's own reason.

:class:`~wasinn.testing.harness.KitHarness` hands drivers out and closes them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import numpy as np
import wasmtime

from wasinn.abi.profiles import PROFILES, AbiProfile
from wasinn.enums import ErrorCode, ExecutionTarget, GraphEncoding, TensorType
from wasinn.errors import WasiNnError
from wasinn.host.host import WasiNnHost
from wasinn.tensor import Tensor
from wasinn.testing.guest import TrampolineGuest
from wasinn.testing.values import Outcome

__all__ = ["Driver", "GuestDriver", "LogCapture", "StateDriver", "abi_for"]


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
