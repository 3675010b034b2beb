"""A hostile-guest harness: ABI calls with corrupted arguments, checked against a shadow model.

Shared by the hypothesis tests of this folder and the coverage-guided fuzzer ``fuzz/fuzz_abi.py``
(which puts this folder on ``sys.path``). Both generate :data:`Op` sequences; :class:`AbiHarness`
runs them through a real wasm guest (:class:`FastGuest`, a trampoline whose exports call each
wasi-nn import unchanged) and checks, after every call:

* the errno is success or one of the errors documented for that function (:data:`ALLOWED`);
* wasinn wrote guest memory only where the call allows it (out-pointers, the declared output
  buffer): a byte changed anywhere else is a buffer overrun;
* the store's handle tables match a shadow model of what the calls so far should have made
  (a handle works iff it was returned and not yet released; limits are never exceeded);
* wasinn logged no internal error (an unexpected Python exception caught at the ABI boundary);
* after the whole sequence (:meth:`AbiHarness.finish`): every handle can still be released, a
  correct load and inference still give the right numbers, and closing the store releases every
  backend object.

Pointers, lengths and handles are described relative to what a correct call would pass
(:class:`Ptr`, :class:`Len`, :class:`Handle`), so that random mutations stay near the interesting
boundaries (end of memory, off by one, wrapped around 2^32) rather than being uniformly hopeless.
"""

from __future__ import annotations

import ctypes
import json
import logging
import math
import struct
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import wasmtime

from wasinn import Limits, WasiNnHost
from wasinn.abi import wamr_legacy
from wasinn.abi.ephemeral import FUNCTIONS as EPHEMERAL_FUNCTIONS
from wasinn.abi.linking import WASMEDGE_ONLY_IMPORTS
from wasinn.hardware import Cpu, Hardware
from wasinn.testing.guest import INITIAL_PAGES, PAGE, TrampolineGuest, trampoline_wat
from wasinn_test_backends import affine_model, fake, make_model

U32 = 0xFFFFFFFF
_memcmp = ctypes.CDLL(None).memcmp
_memcmp.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_memcmp.restype = ctypes.c_int

#: witx errno numbers (the ``witx`` and ``wamr-legacy`` profiles share them).
SUCCESS, INVALID_ARGUMENT, INVALID_ENCODING, MISSING_MEMORY, BUSY, RUNTIME_ERROR, UNSUPPORTED, TOO_LARGE, \
    NOT_FOUND = range(9)

#: What each import may return for *any* arguments, given a guest that exports its memory and the
#: fake backend. ``runtime_error`` appears only where a backend hook runs (the fake backend raises
#: plain exceptions for malformed models and for its ``fail=`` models).
ALLOWED: dict[str, frozenset[int]] = {
    "load": frozenset({SUCCESS, INVALID_ARGUMENT, INVALID_ENCODING, BUSY, RUNTIME_ERROR, UNSUPPORTED, TOO_LARGE}),
    "load_by_name": frozenset({SUCCESS, INVALID_ARGUMENT, BUSY, NOT_FOUND}),
    "load_by_name_with_config": frozenset({SUCCESS, INVALID_ARGUMENT, BUSY, NOT_FOUND}),
    "init_execution_context": frozenset({SUCCESS, INVALID_ARGUMENT, BUSY, RUNTIME_ERROR}),
    "set_input": frozenset({SUCCESS, INVALID_ARGUMENT, RUNTIME_ERROR, TOO_LARGE}),
    "compute": frozenset({SUCCESS, INVALID_ARGUMENT, RUNTIME_ERROR}),
    "get_output": frozenset({SUCCESS, INVALID_ARGUMENT, RUNTIME_ERROR, TOO_LARGE}),
    "unload": frozenset({SUCCESS, INVALID_ARGUMENT}),
    "finalize_execution_context": frozenset({SUCCESS, INVALID_ARGUMENT}),
}

#: The models the harness knows the shape of (output j = input * 2 + 1, see wasinn_test_backends).
CANONICAL_SPECS: dict[str, dict[str, Any]] = {
    "f32": json.loads(affine_model("f32", (1, 4))[4:]),
    "u8": json.loads(affine_model("u8", (2, 3))[4:]),
    "i64": json.loads(affine_model("i64", (1, 1))[4:]),
    "f16x2": json.loads(affine_model("f16", (3,), outputs=2)[4:]),
    "dynamic": json.loads(affine_model("f64", (1, 2))[4:]) | {
        "inputs": [{"name": "x", "dtype": "f64", "shape": [None, 2]}],
        "outputs": [{"name": "y0", "dtype": "f64", "shape": [None, 2]}]},
    "fail-compute": json.loads(affine_model("f32", (1, 4), fail="compute")[4:]),
    "fail-set_input": json.loads(affine_model("f32", (1, 4), fail="set_input")[4:]),
    "fail-get_output": json.loads(affine_model("f32", (1, 4), fail="get_output")[4:]),
    "fail-init": json.loads(affine_model("f32", (1, 4), fail="init")[4:]),
    "fail-load": json.loads(affine_model("f32", (1, 4), fail="load")[4:]),
}
CANONICAL_MODELS: dict[str, bytes] = {key: make_model(spec) for key, spec in CANONICAL_SPECS.items()}
#: Registered by every harness host; "m" and "dyn" serve load_by_name.
NAMED = {"m": "f32", "dyn": "dynamic"}
#: witx tensor type numbers -> numpy dtypes (the legacy profile uses 0 f16, 1 f32, 2 u8, 3 i32).
WITX_TYPES = {0: np.float16, 1: np.float32, 2: np.float64, 3: np.uint8, 4: np.int32, 5: np.int64}
LEGACY_TYPES = {0: np.float16, 1: np.float32, 2: np.uint8, 3: np.int32}
#: Every number a witx-family profile reads as a tensor type (witx, witx-2022, wamr-2.1 alternates).
KNOWN_WITX_TYPE_NUMBERS = frozenset(range(7))
DTYPE_NAMES = {"f16": np.float16, "f32": np.float32, "f64": np.float64, "u8": np.uint8, "i32": np.int32,
               "i64": np.int64}

#: Pages of a FastGuest's memory at start: one page of scratch, one of heap (it grows as needed).
#: Smaller than TrampolineGuest's, so that the before/after comparison of every call is cheap.
GUEST_PAGES = 2

#: u32 values that sit on the boundaries wasinn must get right.
INTERESTING = (0, 1, 2, 3, 4, 7, 8, 16, 63, 64, 65, 0xFF, 0x100, 0xFFFF, 0x10000, GUEST_PAGES * PAGE - 4,
               GUEST_PAGES * PAGE, 0x101, 0x10003,  # the last two alias f32 / i32 in their low byte
               0x7FFFFFFF, 0x80000000, 0xFFFFFFF0, 0xFFFFFFFC, 0xFFFFFFFE, 0xFFFFFFFF)

FAST_LIMITS = Limits(max_model_bytes=1 << 16, max_tensor_bytes=1 << 16, max_graphs_per_store=4,
                     max_contexts_per_store=6, max_store_bytes=3 << 13)


# ---- argument descriptions -------------------------------------------------------------------------
@dataclass(frozen=True)
class Ptr:
    """A pointer argument: ``ok`` (where the harness put the data), ``raw`` (this u32), ``delta``
    (the right one plus ``value``, wrapping at 2^32) or ``end`` (``value`` bytes before the end of
    memory; negative: past it)."""

    mode: str = "ok"
    value: int = 0

    def resolve(self, actual: int, memory_size: int) -> int:
        if self.mode == "raw":
            return self.value & U32
        if self.mode == "delta":
            return (actual + self.value) & U32
        if self.mode == "end":
            return (memory_size - self.value) & U32
        return actual


@dataclass(frozen=True)
class Len:
    """A length or count: ``ok`` (the right one), ``raw`` (this u32) or ``delta`` (right + value)."""

    mode: str = "ok"
    value: int = 0

    def resolve(self, actual: int) -> int:
        if self.mode == "raw":
            return self.value & U32
        if self.mode == "delta":
            return (actual + self.value) & U32
        return actual


@dataclass(frozen=True)
class Handle:
    """A graph or context handle: ``live`` (the ``value``-th live one, if any) or ``raw``."""

    mode: str = "live"
    value: int = 0


OK_PTR, OK_LEN, LIVE = Ptr(), Len(), Handle()


# ---- operations ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Load:
    builders: tuple[bytes, ...]
    encoding: int | None = None  # None: autodetect (witx 5, legacy 6)
    target: int = 0
    count: Len = OK_LEN
    array: Ptr = OK_PTR
    pointers: tuple[Ptr, ...] = ()  # per builder, cycled
    lengths: tuple[Len, ...] = ()
    out: Ptr = OK_PTR


@dataclass(frozen=True)
class LoadByName:
    name: bytes
    config: bytes | None = None
    name_ptr: Ptr = OK_PTR
    name_len: Len = OK_LEN
    config_ptr: Ptr = OK_PTR
    config_len: Len = OK_LEN
    out: Ptr = OK_PTR


@dataclass(frozen=True)
class Init:
    graph: Handle = LIVE
    out: Ptr = OK_PTR


@dataclass(frozen=True)
class SetInput:
    context: Handle = LIVE
    index: int = 0
    dims: tuple[int, ...] | None = None  # None: the dims the model wants
    type_number: int | None = None  # None: the right type
    fill: int = 0
    data_len: Len = OK_LEN
    rank: Len = OK_LEN
    dims_ptr: Ptr = OK_PTR
    data_ptr: Ptr = OK_PTR
    record: Ptr = OK_PTR
    padding: bytes = b"\0\0\0"


@dataclass(frozen=True)
class Compute:
    context: Handle = LIVE


@dataclass(frozen=True)
class GetOutput:
    context: Handle = LIVE
    index: int = 0
    out: Ptr = OK_PTR
    out_max: Len = OK_LEN  # ok: exactly the output's size when known, else 4 KiB
    written: Ptr = OK_PTR


@dataclass(frozen=True)
class Unload:
    graph: Handle = LIVE


@dataclass(frozen=True)
class Finalize:
    context: Handle = LIVE


@dataclass(frozen=True)
class Infer:
    """A completely correct inference on a live graph of known shape: must give input * 2 + 1."""

    graph: Handle = LIVE
    fill: int = 3


@dataclass(frozen=True)
class Trap:
    """The guest traps (executes ``unreachable``); its store must stay usable."""


@dataclass(frozen=True)
class Grow:
    """The guest grows its memory by a page."""


Op = Load | LoadByName | Init | SetInput | Compute | GetOutput | Unload | Finalize | Infer | Trap | Grow


# ---- the guest --------------------------------------------------------------------------------------
LEGACY_FUNCTIONS = {name: arity for name, (arity, _) in wamr_legacy.FUNCTIONS.items()}
EPHEMERAL_IMPORTS = {name: arity for name, (arity, _) in EPHEMERAL_FUNCTIONS.items()
                     if name not in WASMEDGE_ONLY_IMPORTS}
# Per engine (weakly: an id() key was reused by a later engine once the first was collected).
_MODULES: weakref.WeakKeyDictionary[wasmtime.Engine, dict[tuple[str, int], wasmtime.Module]] = (
    weakref.WeakKeyDictionary())


class FastGuest(TrampolineGuest):
    """A :class:`TrampolineGuest` that shares its engine, linker and compiled module with others, so
    that a fuzzer or a soak test can make thousands of them (instantiation only, no compilation)."""

    def __init__(self, host: WasiNnHost, engine: wasmtime.Engine, linker: wasmtime.Linker, *,
                 legacy: bool = False, pages: int = GUEST_PAGES) -> None:
        self.host = host
        self.engine = engine
        self.linker = linker
        module_name = "wasi_nn" if legacy else "wasi_ephemeral_nn"
        key = (module_name, pages)
        compiled = _MODULES.setdefault(engine, {})
        wasm = compiled.get(key)
        if wasm is None:
            functions = LEGACY_FUNCTIONS if legacy else EPHEMERAL_IMPORTS
            wat = trampoline_wat(module_name, functions).replace(
                f'(memory (export "memory") {INITIAL_PAGES})', f'(memory (export "memory") {pages})')
            assert f'(memory (export "memory") {pages})' in wat
            wasm = compiled[key] = wasmtime.Module(engine, wat)
        self.store = host.new_store(engine)
        self.instance = host.instantiate(self.store, linker, wasm)
        exports = self.instance.exports(self.store)
        memory = exports["memory"]
        assert isinstance(memory, wasmtime.Memory)
        self.memory = memory
        self._exports = exports
        self.heap = PAGE


def make_linker(host: WasiNnHost, engine: wasmtime.Engine) -> wasmtime.Linker:
    linker = wasmtime.Linker(engine)
    host.add_to_linker(linker)
    return linker


#: A fixed hardware snapshot (a plain CPU), so that results do not depend on the machine.
CPU_ONLY = Hardware(cpu=Cpu("x86_64", "unknown", "test cpu", 1, frozenset()))


def fake_host(limits: Limits | None = None, **kwargs: Any) -> WasiNnHost:
    """A host with only the ``fake`` backend and the :data:`NAMED` models registered."""
    kwargs.setdefault("hardware", CPU_ONLY)
    # In-process: the suite counts the fake backend's live objects in this process (LiveObjects) and
    # looks into contexts; guest models in workers are tested by tests/test_worker.py.
    limits = replace(limits, guest_models="in-process") if limits is not None else Limits(guest_models="in-process")
    host = WasiNnHost(backends={"fake": fake}, entry_points=False, allow=["fake"], limits=limits, **kwargs)
    for name, key in NAMED.items():
        host.register_model(name, CANONICAL_MODELS[key])
    return host


class LiveObjects:
    """The fake backend's graphs and contexts made since this snapshot and still alive.

    Objects already alive at the snapshot are ignored, so that a leak found by one test cannot fail
    the next one too. Graphs the given hosts hold as named models are the hosts', not a leak.
    """

    def __init__(self) -> None:
        self.graphs = set(fake.LIVE_GRAPHS)
        self.contexts = set(fake.LIVE_CONTEXTS)

    def new(self, *hosts: WasiNnHost) -> tuple[int, int]:
        named = {id(loaded.graph) for host in hosts for loaded in host.named.loaded.values()}
        return len(fake.LIVE_GRAPHS - self.graphs - named), len(fake.LIVE_CONTEXTS - self.contexts)


class InternalErrors(logging.Handler):
    """Collects ERROR records of the ``wasinn`` loggers: an internal error is a bug, whatever errno it became."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def quiet_wasinn() -> Iterator[InternalErrors]:
    """Silence wasinn's per-call warnings (a fuzzer makes thousands) and collect its errors."""
    logger = logging.getLogger("wasinn")
    handler = InternalErrors()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


# ---- the shadow model -----------------------------------------------------------------------------------
@dataclass
class GraphInfo:
    spec: dict[str, Any] | None  # the fake model's JSON, when it is one the fake backend accepted
    named: bool = False


@dataclass
class ContextInfo:
    graph: GraphInfo
    inputs: dict[int, np.ndarray] = field(default_factory=dict)


class HarnessFailure(AssertionError):
    """A property of the host was violated (the message says which, with the call)."""


def _spec_of(builders: Sequence[bytes]) -> dict[str, Any] | None:
    if len(builders) != 1 or not builders[0].startswith(b"WTST"):
        return None
    try:
        spec = json.loads(builders[0][4:])
    except ValueError:
        return None
    return spec if isinstance(spec, dict) else None


def _input_shape(spec: dict[str, Any] | None) -> tuple[tuple[int, ...], Any] | None:
    """The concrete (shape, dtype) of input 0 of a well-formed fake model, or None."""
    try:
        item = spec["inputs"][0]  # type: ignore[index]
        shape = tuple(1 if d is None else int(d) for d in item["shape"])
        return shape, DTYPE_NAMES[item["dtype"]]
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _output_nbytes(spec: dict[str, Any] | None, index: int) -> int | None:
    try:
        item = spec["outputs"][index]  # type: ignore[index]
        if any(d is None for d in item["shape"]):
            return None
        return math.prod(int(d) for d in item["shape"]) * np.dtype(DTYPE_NAMES[item["dtype"]]).itemsize
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _known_good(spec: dict[str, Any] | None) -> bool:
    return spec is not None and any(spec == s for s in CANONICAL_SPECS.values()) and "fail" not in spec


class AbiHarness:
    """One guest instance, its shadow tables and the oracles (see the module docstring)."""

    def __init__(self, host: WasiNnHost, engine: wasmtime.Engine, linker: wasmtime.Linker, *,
                 legacy: bool = False) -> None:
        self.host = host
        self.legacy = legacy
        self.live = LiveObjects()
        self.guest = FastGuest(host, engine, linker, legacy=legacy)
        self.graphs: dict[int, GraphInfo] = {}
        self.contexts: dict[int, ContextInfo] = {}
        self.log: list[str] = []
        self.calls = 0
        self._before = np.empty(0, np.uint8)
        self._mask = np.empty(0, bool)

    # -- plumbing -----------------------------------------------------------------------------------
    def fail(self, message: str) -> HarnessFailure:
        history = "\n  ".join(self.log[-12:])
        return HarnessFailure(f"{message}\n  last calls:\n  {history}")

    @property
    def memory_size(self) -> int:
        return self.guest.memory_size

    def memory_view(self) -> np.ndarray:
        """The guest's linear memory as a zero-copy array (valid until the memory grows)."""
        size = self.memory_size
        base = ctypes.addressof(self.guest.memory.data_ptr(self.guest.store).contents)
        return np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(base))

    def snapshot(self) -> np.ndarray:
        """A copy of the guest's whole linear memory, into a buffer reused from call to call."""
        view = self.memory_view()
        if self._before.size < view.size:
            self._before = np.empty(view.size, np.uint8)
            self._mask = np.empty(view.size, bool)
        before = self._before[:view.size]
        np.copyto(before, view)
        return before

    def call(self, name: str, args: Sequence[int], writable: Sequence[tuple[int, int]] = ()) -> int:
        """Call ``nn_<name>``; check the errno and that only ``writable`` ``(ptr, length)`` changed."""
        before = self.snapshot()
        errno = self.guest.call(name, *args)
        self.calls += 1
        self.log.append(f"{name}({', '.join(hex(a & U32) for a in args)}) -> {errno}")
        after = self.memory_view()
        if errno not in ALLOWED[name]:
            raise self.fail(f"{name} returned errno {errno}, not one of {sorted(ALLOWED[name])}")
        if len(after) != len(before):
            raise self.fail(f"{name} changed the memory size from {len(before)} to {len(after)}")
        changed = None
        if _memcmp(before.ctypes.data, after.ctypes.data, after.size):  # one memcmp; the slow path only on a change
            mask = self._mask[:after.size]
            np.not_equal(before, after, out=mask)
            changed = np.flatnonzero(mask)
        if changed is not None:
            ok = np.zeros(changed.size, bool)
            for ptr, length in writable:
                ok |= (changed >= ptr) & (changed < ptr + length)
            if not ok.all():
                bad = changed[~ok]
                raise self.fail(f"{name} wrote {bad.size} guest byte(s) outside its out-pointers and buffers, "
                                f"first at 0x{int(bad[0]):x} (allowed: {[(hex(p), n) for p, n in writable]})")
        return errno

    def check_tables(self) -> None:
        state = self.guest.state
        if state.graph_count != len(self.graphs) or state.context_count != len(self.contexts):
            raise self.fail(f"the store holds {state.graph_count} graphs and {state.context_count} contexts; "
                            f"the calls so far should have left {len(self.graphs)} and {len(self.contexts)}")
        limits = state.limits
        if state.graph_count > limits.max_graphs_per_store or state.context_count > limits.max_contexts_per_store:
            raise self.fail("a count limit was exceeded")

    def good(self, spec: dict[str, Any] | None) -> bool:
        """A canonical model whose input types this ABI can express (legacy: no f64, no i64)."""
        if not _known_good(spec):
            return False
        types = LEGACY_TYPES if self.legacy else WITX_TYPES
        return all(DTYPE_NAMES[item["dtype"]] in types.values() for item in spec["inputs"])  # type: ignore[index]

    def pick(self, handle: Handle, table: dict[int, Any]) -> int:
        if handle.mode == "live" and table:
            keys = sorted(table)
            return keys[handle.value % len(keys)]
        return handle.value & U32

    def out_value(self, ptr: int) -> int:
        return self.guest.u32(ptr)

    def valid_out(self, ptr: int, length: int = 4) -> bool:
        return ptr + length <= self.memory_size

    # -- operations ---------------------------------------------------------------------------------
    def run(self, ops: Sequence[Op]) -> None:
        for op in ops:
            self.step(op)

    def step(self, op: Op) -> int | None:
        """Run one operation with every check; returns the errno of its ABI call (``None`` for
        Infer, Trap and Grow, and for calls the legacy module does not have)."""
        self.guest.reset_heap()
        errno: int | None = None
        if isinstance(op, Load):
            errno = self.do_load(op)
        elif isinstance(op, LoadByName):
            errno = self.do_load_by_name(op)
        elif isinstance(op, Init):
            errno = self.do_init(op)
        elif isinstance(op, SetInput):
            errno = self.do_set_input(op)
        elif isinstance(op, Compute):
            errno = self.do_compute(op)
        elif isinstance(op, GetOutput):
            errno = self.do_get_output(op)
        elif isinstance(op, Unload):
            errno = self.do_unload(op)
        elif isinstance(op, Finalize):
            errno = self.do_finalize(op)
        elif isinstance(op, Infer):
            self.do_infer(op)
        elif isinstance(op, Trap):
            try:
                self.guest.trap()
            except wasmtime.Trap:
                pass
            else:
                raise self.fail("the trap export did not trap")
        elif isinstance(op, Grow):
            if self.memory_size < 64 * PAGE:
                self.guest.memory.grow(self.guest.store, 1)
        else:  # pragma: no cover
            raise TypeError(op)
        self.check_tables()
        return errno

    def do_load(self, op: Load) -> int | None:
        g = self.guest
        size = self.memory_size
        builders = op.builders[:16]
        pairs = []
        for i, data in enumerate(builders):
            ptr = g.put(data)
            mptr = op.pointers[i % len(op.pointers)] if op.pointers else OK_PTR
            mlen = op.lengths[i % len(op.lengths)] if op.lengths else OK_LEN
            pairs.append((mptr.resolve(ptr, size), mlen.resolve(len(data))))
        array = g.put(b"".join(struct.pack("<II", p, n) for p, n in pairs) or b"\0" * 8)
        count = op.count.resolve(len(builders))
        out = op.out.resolve(g.alloc(4), size)
        encoding = op.encoding if op.encoding is not None else (6 if self.legacy else 5)
        if self.legacy:
            pair = g.put(struct.pack("<II", op.array.resolve(array, size), count))
            args = [pair, encoding, op.target, out]
        else:
            args = [op.array.resolve(array, size), count, encoding, op.target, out]
        errno = self.call("load", args, [(out, 4)])
        exact = (count == len(builders) and all(m.mode == "ok" for m in (op.array, *op.pointers, *op.lengths))
                 and len(builders) == len(op.builders))
        if errno == SUCCESS:
            self.new_graph(out, GraphInfo(_spec_of(builders) if exact else None))
        elif not self.valid_out(out) and errno != INVALID_ARGUMENT:
            raise self.fail(f"load with an out-pointer outside memory returned {errno}, not invalid_argument")
        return errno

    def new_graph(self, out: int, info: GraphInfo) -> None:
        if not self.valid_out(out):
            raise self.fail("a call succeeded although its out-pointer was outside memory")
        handle = self.out_value(out)
        if handle in self.graphs:
            raise self.fail(f"graph handle {handle} was handed out twice")
        self.graphs[handle] = info

    def do_load_by_name(self, op: LoadByName) -> int | None:
        g = self.guest
        size = self.memory_size
        name_ptr = op.name_ptr.resolve(g.put(op.name), size)
        name_len = op.name_len.resolve(len(op.name))
        out = op.out.resolve(g.alloc(4), size)
        if op.config is None or self.legacy:
            errno = self.call("load_by_name", [name_ptr, name_len, out], [(out, 4)])
        else:
            config_ptr = op.config_ptr.resolve(g.put(op.config), size)
            config_len = op.config_len.resolve(len(op.config))
            errno = self.call("load_by_name_with_config", [name_ptr, name_len, config_ptr, config_len, out],
                              [(out, 4)])
        if errno == SUCCESS:
            exact = op.name_ptr.mode == "ok" and op.name_len.mode == "ok"
            key = op.name.removesuffix(b"\0").decode("utf-8", "replace")
            if exact and key not in set(self.host.named.names()):
                raise self.fail(f"load_by_name found {op.name!r}, which was never registered")
            spec = CANONICAL_SPECS[NAMED[key]] if exact and key in NAMED else None
            self.new_graph(out, GraphInfo(spec, named=True))
        return errno

    def do_init(self, op: Init) -> int | None:
        out = op.out.resolve(self.guest.alloc(4), self.memory_size)
        graph = self.pick(op.graph, self.graphs)
        errno = self.call("init_execution_context", [graph, out], [(out, 4)])
        if errno == SUCCESS:
            if graph not in self.graphs:
                raise self.fail(f"init_execution_context succeeded on graph {graph}, which is not live")
            handle = self.out_value(out)
            if not self.valid_out(out) or handle in self.contexts:
                raise self.fail(f"context handle {handle} was handed out twice (or out-pointer invalid)")
            self.contexts[handle] = ContextInfo(self.graphs[graph])
        elif graph not in self.graphs and errno != INVALID_ARGUMENT:
            raise self.fail(f"init_execution_context on an unknown graph returned {errno}")
        return errno

    def unknown_context(self, name: str, context: int, errno: int) -> None:
        if context not in self.contexts and errno != INVALID_ARGUMENT:
            raise self.fail(f"{name} on unknown context {context} returned {errno}, not invalid_argument")

    def do_set_input(self, op: SetInput) -> int | None:
        g = self.guest
        size = self.memory_size
        context = self.pick(op.context, self.contexts)
        info = self.contexts.get(context)
        wanted = _input_shape(info.graph.spec) if info else None
        dims = op.dims if op.dims is not None else (wanted[0] if wanted else (1, 4))
        types = LEGACY_TYPES if self.legacy else WITX_TYPES
        if op.type_number is not None:
            type_number = op.type_number
        else:
            numpy_type = wanted[1] if wanted else np.float32
            type_number = next((n for n, t in types.items() if t is numpy_type), 1)
        itemsize = np.dtype(types[type_number]).itemsize if type_number in types else 4
        nbytes = math.prod(dims) * itemsize
        data = bytes([op.fill & 0xFF]) * min(nbytes, 1 << 14)
        dims_raw = struct.pack(f"<{len(dims)}I", *(d & U32 for d in dims))
        dims_ptr = op.dims_ptr.resolve(g.put(dims_raw), size)
        rank = op.rank.resolve(len(dims))
        data_ptr = op.data_ptr.resolve(g.put(data), size)
        data_len = 0
        if self.legacy:
            pair = g.put(struct.pack("<II", dims_ptr, rank))
            record = g.put(struct.pack("<III", pair, type_number & U32, data_ptr))
        else:
            data_len = op.data_len.resolve(nbytes & U32)
            record = g.put(struct.pack("<IIB", dims_ptr, rank, type_number & 0xFF) + op.padding[:3].ljust(3, b"\0")
                           + struct.pack("<II", data_ptr, data_len))
        record = op.record.resolve(record, size)
        errno = self.call("set_input", [context, op.index, record])
        self.unknown_context("set_input", context, errno)
        if errno == SUCCESS and all(m.mode == "ok" for m in (op.record, op.dims_ptr, op.rank)):
            # The host read exactly these dims: success means the byte length matched their product.
            count = math.prod(d & U32 for d in dims)
            limit = self.guest.state.limits.max_tensor_bytes
            sizes = {count * k for k in (1, 2, 4, 8) if count * k <= limit}
            if self.legacy:
                sizes = {count * itemsize} & sizes
            elif data_len not in sizes:
                sizes = set()
            if not sizes:
                raise self.fail(f"set_input accepted dims {dims} (product {count}) of type {type_number} with "
                                f"{'no length' if self.legacy else f'{data_len} bytes'}")
        if errno == SUCCESS and op.record.mode == "ok":
            # Only numbers some profile of this ABI knows are tensor types (witx: a u8; legacy: a u32 enum).
            number = type_number & (U32 if self.legacy else 0xFF)
            if number not in (LEGACY_TYPES if self.legacy else KNOWN_WITX_TYPE_NUMBERS):
                raise self.fail(f"set_input accepted the unknown tensor type {type_number:#x}")
        return errno

    def do_compute(self, op: Compute) -> int | None:
        context = self.pick(op.context, self.contexts)
        errno = self.call("compute", [context])
        self.unknown_context("compute", context, errno)
        return errno

    def do_get_output(self, op: GetOutput) -> int | None:
        g = self.guest
        size = self.memory_size
        context = self.pick(op.context, self.contexts)
        info = self.contexts.get(context)
        expected = _output_nbytes(info.graph.spec, op.index) if info else None
        out_max = op.out_max.resolve(expected if expected is not None else 4096)
        buffer = g.alloc(min(out_max, 1 << 16))
        out = op.out.resolve(buffer, size)
        written = op.written.resolve(g.alloc(4), size)
        if self.legacy:
            # The in/out size counts elements; wasinn may write up to capacity elements of the output's type.
            if self.valid_out(written):
                g.memory.write(g.store, struct.pack("<I", out_max), written)
            allowed = [(out, min(out_max * 8, 1 << 40)), (written, 4)]
            args = [context, op.index, out, written]
        else:
            allowed = [(out, out_max), (written, 4)]
            args = [context, op.index, out, out_max, written]
        errno = self.call("get_output", args, allowed)
        self.unknown_context("get_output", context, errno)
        if errno == SUCCESS and not self.legacy:
            count = self.out_value(written)
            if count > out_max:
                raise self.fail(f"get_output wrote {count} bytes into a {out_max}-byte buffer")
            if count > self.guest.state.limits.max_tensor_bytes:
                raise self.fail(f"get_output returned {count} bytes, over max_tensor_bytes")
            if expected is not None and _known_good(info.graph.spec if info else None) and count != expected:
                raise self.fail(f"get_output reported {count} bytes; the output has {expected}")
        return errno

    def do_unload(self, op: Unload) -> int | None:
        if self.legacy:
            return None
        graph = self.pick(op.graph, self.graphs)
        errno = self.call("unload", [graph])
        if (errno == SUCCESS) != (graph in self.graphs):
            raise self.fail(f"unload({graph}) returned {errno} but the graph is "
                            f"{'live' if graph in self.graphs else 'not live'}")
        self.graphs.pop(graph, None)
        return errno

    def do_finalize(self, op: Finalize) -> int | None:
        if self.legacy:
            return None
        context = self.pick(op.context, self.contexts)
        errno = self.call("finalize_execution_context", [context])
        if (errno == SUCCESS) != (context in self.contexts):
            raise self.fail(f"finalize_execution_context({context}) returned {errno} but the context is "
                            f"{'live' if context in self.contexts else 'not live'}")
        self.contexts.pop(context, None)
        return errno

    def do_infer(self, op: Infer) -> None:
        good = {h: info for h, info in self.graphs.items() if self.good(info.spec)}
        if not good:
            return
        graph = sorted(good)[op.graph.value % len(good)]
        self.correct_inference(graph, self.graphs[graph], op.fill, allow_busy=True)

    def correct_inference(self, graph: int, info: GraphInfo, fill: int, *, allow_busy: bool) -> None:
        """Context, every input, compute, every output checked against input * 2 + 1."""
        g = self.guest
        assert info.spec is not None
        out = g.alloc(4)
        errno = self.call("init_execution_context", [graph, out], [(out, 4)])
        if errno == BUSY and allow_busy:
            return
        if errno != SUCCESS:
            raise self.fail(f"a correct init_execution_context on graph {graph} returned {errno}")
        context = self.out_value(out)
        self.contexts[context] = ContextInfo(info)
        inputs = []
        types = LEGACY_TYPES if self.legacy else WITX_TYPES
        for i, item in enumerate(info.spec["inputs"]):
            shape = tuple(1 if d is None else d for d in item["shape"])
            dtype = DTYPE_NAMES[item["dtype"]]
            array = np.full(shape, fill % 50, dtype)
            inputs.append(array)
            number = next(n for n, t in types.items() if t is dtype)
            dims_ptr = g.put(struct.pack(f"<{len(shape)}I", *shape))
            data_ptr = g.put(array.tobytes())
            if self.legacy:
                pair = g.put(struct.pack("<II", dims_ptr, len(shape)))
                record = g.put(struct.pack("<III", pair, number, data_ptr))
            else:
                record = g.put(struct.pack("<IIB3xII", dims_ptr, len(shape), number, data_ptr, array.nbytes))
            errno = self.call("set_input", [context, i, record])
            if errno != SUCCESS:
                raise self.fail(f"a correct set_input returned {errno}")
        errno = self.call("compute", [context])
        if errno != SUCCESS:
            raise self.fail(f"a correct compute returned {errno}")
        for j, item in enumerate(info.spec["outputs"]):
            dtype = DTYPE_NAMES[item["dtype"]]
            want = (inputs[j % len(inputs)] * 2 + 1).astype(dtype)
            buffer, written = g.alloc(want.nbytes), g.alloc(4)
            if self.legacy:
                g.memory.write(g.store, struct.pack("<I", want.size), written)
                errno = self.call("get_output", [context, j, buffer, written],
                                  [(buffer, want.nbytes), (written, 4)])
                count = self.out_value(written) * want.itemsize
            else:
                errno = self.call("get_output", [context, j, buffer, want.nbytes, written],
                                  [(buffer, want.nbytes), (written, 4)])
                count = self.out_value(written)
            if errno != SUCCESS or count != want.nbytes:
                raise self.fail(f"a correct get_output returned errno {errno}, {count} bytes (want {want.nbytes})")
            got = np.frombuffer(g.read(buffer, want.nbytes), dtype)
            if not np.array_equal(got, want.reshape(-1)):
                raise self.fail(f"output {j} is {got!r}, not {want.reshape(-1)!r}")
        if not self.legacy:
            if self.call("finalize_execution_context", [context]) != SUCCESS:
                raise self.fail("finalizing a correct context failed")
            del self.contexts[context]

    # -- the end: nothing is corrupted, nothing leaks -----------------------------------------------------
    def finish(self, internal_errors: InternalErrors | None = None, *, release: bool = True) -> None:
        """After a sequence: nothing is corrupted. With ``release``, every live handle is released
        first (and must be releasable); without, the store is left holding them for :meth:`close`."""
        g = self.guest
        g.reset_heap()
        if internal_errors is not None and internal_errors.records:
            record = internal_errors.records[0]
            raise self.fail(f"wasinn logged an internal error: {record.getMessage()}")
        if release and not self.legacy:
            for context in sorted(self.contexts):
                if self.call("finalize_execution_context", [context]) != SUCCESS:
                    raise self.fail(f"live context {context} could not be finalized")
                del self.contexts[context]
            for graph in sorted(self.graphs):
                if self.call("unload", [graph]) != SUCCESS:
                    raise self.fail(f"live graph {graph} could not be unloaded")
                del self.graphs[graph]
            self.check_tables()
        limits = g.state.limits
        # Graphs already live still compute the right numbers.
        for graph, info in sorted(self.graphs.items()):
            if self.good(info.spec) and len(self.contexts) < limits.max_contexts_per_store:
                g.reset_heap()
                self.correct_inference(graph, info, 5, allow_busy=False)
        # A correct load and a correct named load still work (where the store has room for them).
        encoding = 6 if self.legacy else 5
        for key in ("f32", "u8", None):
            if len(self.graphs) >= limits.max_graphs_per_store or len(self.contexts) >= limits.max_contexts_per_store:
                break
            g.reset_heap()
            out = g.alloc(4)
            if key is None:
                errno = self.call("load_by_name", [g.put(b"m"), 1, out], [(out, 4)])
                spec = CANONICAL_SPECS["f32"]
            else:
                data = CANONICAL_MODELS[key]
                array = g.put(struct.pack("<II", g.put(data), len(data)))
                args = [g.put(struct.pack("<II", array, 1)), encoding, 0, out] if self.legacy \
                    else [array, 1, encoding, 0, out]
                errno = self.call("load", args, [(out, 4)])
                spec = CANONICAL_SPECS[key]
            if errno != SUCCESS:
                raise self.fail(f"a correct {'load_by_name' if key is None else 'load'} after the sequence "
                                f"returned {errno}")
            self.new_graph(out, GraphInfo(spec, named=key is None))
            handle = self.out_value(out)
            self.correct_inference(handle, self.graphs[handle], 7, allow_busy=False)
            self.check_tables()
        if internal_errors is not None and internal_errors.records:
            raise self.fail(f"wasinn logged an internal error: {internal_errors.records[0].getMessage()}")

    def close(self, *, check: bool = True) -> None:
        """Close the store; every graph and context it made must be released by the backend.

        (``check=False`` where several harnesses live at once: then compare the backend's live
        objects before and after all of them, hosts closed too.)
        """
        self.guest.close()
        if not check:
            return
        graphs, contexts = self.live.new(self.host)
        if graphs or contexts:
            raise self.fail(f"after the store closed the fake backend still holds {graphs} graphs and {contexts} "
                            f"contexts it made")
