"""A guest's model must not act on the host: the core's share of it (issue 26).

What the core decides for every backend, tested with the test-only backends and backends defined
here (real runtimes are tested in their own packages and in ``tests/hostile``):

* formats that carry code are refused from guests before any backend sees them (row 1, 2);
* a backend that finds a file malformed ends the ranking: no runner-up gets it (row 6);
* ``preload:<path>`` texts are compared as strings: nothing is expanded, resolved or stat'ed (row 8);
* runtime messages are escaped in the log, and a guest's failures are rate-limited per store (rows 9, 10);
* runtime memory is counted per context and per store (rows 4, 5: the mechanism backends charge);
* a component's ``compute`` must bring every input (row 14).
"""

from __future__ import annotations

import io
import logging
import os
import pwd
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import wasmtime
from test_names import record_file_access
from wasmtime.component import ResourceHost

import wasinn
from wasinn import (
    BackendInfo,
    Context,
    Decline,
    ErrorCode,
    Graph,
    Hardware,
    Limits,
    ModelDescription,
    ModelFormat,
    Score,
    Tensor,
    TensorSpec,
    TensorType,
    WasiNnError,
    hookimpl,
)
from wasinn.budget import ContextBudget, StoreBudget
from wasinn.component.interface import CONTEXT_TYPE_ID, TENSOR_TYPE_ID, context_compute
from wasinn.component.state import ComponentState, TensorEntry
from wasinn.guestlog import BURST, GuestLog, printable
from wasinn.testing.guest import TrampolineGuest
from wasinn_test_backends import affine_model

WASMEDGE_GGML = 6


def errno(guest: TrampolineGuest, code: ErrorCode) -> int:
    """``code`` in the guest's numbering."""
    profile = guest.state.profile
    assert profile is not None
    return profile.errno(code)


def errnos(guest: TrampolineGuest, *codes: ErrorCode) -> set[int]:
    return {errno(guest, code) for code in codes}


class Recorder:
    """A backend that serves every format it is told about and records what reached it."""

    def __init__(self, formats: Sequence[ModelFormat], score: float = 10.0, *,
                 code_formats: Sequence[ModelFormat] = (), detect: bytes | None = None) -> None:
        self.formats = tuple(formats)
        self.score = score
        self.code_formats = tuple(code_formats)
        self.detect = detect
        self.loaded: list[ModelDescription] = []

    @hookimpl
    def backend_info(self) -> BackendInfo:
        return BackendInfo(runtime="recorder", runtime_version="1", formats=self.formats,
                           code_formats=self.code_formats)

    @hookimpl
    def detect_format(self, builders: Sequence[bytes]) -> str | None:
        if self.detect is not None and bytes(builders[0][:len(self.detect)]) == self.detect:
            return str(self.formats[0])
        return None

    @hookimpl
    def can_handle(self, model: ModelDescription, hw: Hardware) -> Score:
        return Score(self.score, "records what reaches it")

    @hookimpl
    def load(self, model: ModelDescription, hw: Hardware) -> Graph:
        self.loaded.append(model)
        return Graph(inputs=[TensorSpec("x", TensorType.U8, (None,))], outputs=[TensorSpec("y", TensorType.U8, (1,))])

    @hookimpl
    def init_execution_context(self, graph: Graph) -> Context:
        return Context(graph)

    @hookimpl
    def set_input(self, context: Context, index: int, tensor: Tensor) -> None:
        pass

    @hookimpl
    def compute(self, context: Context) -> None:
        pass

    @hookimpl
    def get_output(self, context: Context, index: int) -> np.ndarray:
        return np.zeros(1, np.uint8)


def torchscript_bytes() -> bytes:
    """A zip laid out like ``torch.jit.save``'s archive (all the core's detection looks at)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("m/data.pkl", "m/constants.pkl", "m/code/__torch__.py", "m/version"):
            archive.writestr(name, b"x")
    return buffer.getvalue()


def torch_export_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in ("m/archive_format", "m/models/model.json"):
            archive.writestr(name, b"{}")
    return buffer.getvalue()


# -- formats that carry code (rows 1 and 2, for every backend) -----------------------------------------
@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize(("fmt", "payload"), [(ModelFormat.TORCHSCRIPT, torchscript_bytes),
                                              (ModelFormat.TORCH_EXPORT, torch_export_bytes)])
@pytest.mark.parametrize("encoding", ["autodetect", "pytorch"])
def test_a_guests_code_format_never_reaches_a_backend(fmt: ModelFormat, payload: Any, encoding: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    recorder = Recorder([fmt])
    with wasinn.WasiNnHost(backends={"torchlike": recorder}, entry_points=False) as host:
        guest = TrampolineGuest(host)
        assert guest.load([payload()], encoding=encoding).errno == errno(guest, ErrorCode.INVALID_ARGUMENT)
        guest.close()
    assert recorder.loaded == []  # decided before any backend saw a byte
    assert "allow_guest_code" in caplog.text and "--allow-guest-code" in caplog.text


@pytest.mark.usefixtures("no_allow_list")
def test_the_embedder_opts_in_to_guest_code_and_keeps_its_own_models() -> None:
    recorder = Recorder([ModelFormat.TORCHSCRIPT])
    with wasinn.WasiNnHost(backends={"torchlike": recorder}, entry_points=False,
                           limits=Limits(allow_guest_code=True, guest_models="in-process")) as host:
        guest = TrampolineGuest(host)
        assert guest.load([torchscript_bytes()]).ok
        guest.close()
    assert len(recorder.loaded) == 1 and recorder.loaded[0].from_guest
    # Isolated, the opt-in reaches a worker: this recorder lives in the host, so it cannot run in a
    # worker and the load fails there, never in-process.
    recorder.loaded.clear()
    with wasinn.WasiNnHost(backends={"torchlike": recorder}, entry_points=False,
                           limits=Limits(allow_guest_code=True, guest_models="isolate")) as host:
        guest = TrampolineGuest(host)
        assert guest.load([torchscript_bytes()]).errno == errno(guest, ErrorCode.RUNTIME_ERROR)
        guest.close()
    assert recorder.loaded == []
    # Without the opt-in, the embedder's own (named) model of the same format still loads.
    recorder.loaded.clear()
    with wasinn.WasiNnHost(backends={"torchlike": recorder}, entry_points=False) as host:
        host.register_model("mine", torchscript_bytes())
        guest = TrampolineGuest(host)
        assert guest.load_by_name("mine").ok
        guest.close()
    assert len(recorder.loaded) == 1 and not recorder.loaded[0].from_guest


@pytest.mark.usefixtures("no_allow_list")
def test_a_third_party_code_format_is_refused_too() -> None:
    pickles = ModelFormat("pickled-net")
    recorder = Recorder([pickles], code_formats=[pickles], detect=b"PKLNET")
    with wasinn.WasiNnHost(backends={"pickles": recorder}, entry_points=False) as host:
        guest = TrampolineGuest(host)
        assert guest.load([b"PKLNET" + b"\x80\x04cos\nsystem\n"]).errno == errno(guest, ErrorCode.INVALID_ARGUMENT)
        guest.close()
    assert recorder.loaded == []


# -- a malformed verdict ends the ranking (row 6, for every format) --------------------------------------
class Verifier(Recorder):
    """Knows the format best and refuses a broken file as malformed."""

    @hookimpl
    def can_handle(self, model: ModelDescription, hw: Hardware) -> Score | Decline:  # type: ignore[override]
        if b"BROKEN" in model.builders[0]:
            return Decline("the verifier refused it: tensor 3 points past the buffer", ErrorCode.INVALID_ARGUMENT,
                           malformed=True)
        return Score(90, "verified")


@pytest.mark.usefixtures("no_allow_list")
@pytest.mark.parametrize("order", [("strict", "lax"), ("lax", "strict")])
def test_a_file_the_verifier_refuses_goes_to_no_runner_up(order: tuple[str, str]) -> None:
    fmt = ModelFormat("verified-format")
    strict, lax = Verifier([fmt], detect=b"VFMT"), Recorder([fmt], score=5.0)
    backends = {name: (strict if name == "strict" else lax) for name in order}
    # In-process: the recorders count what they were handed in this process.
    with wasinn.WasiNnHost(backends=backends, entry_points=False, limits=Limits(guest_models="in-process")) as host:
        guest = TrampolineGuest(host)
        assert guest.load([b"VFMT BROKEN"]).errno == errno(guest, ErrorCode.INVALID_ARGUMENT)
        assert lax.loaded == [] and strict.loaded == []
        assert guest.load([b"VFMT fine"]).ok  # a good file still goes to the best backend
        assert len(strict.loaded) == 1
        guest.close()
        ranking = host.explain([b"VFMT BROKEN"])
        assert ranking.winner is None and ranking.malformed is not None
        assert ranking.malformed.backend == "strict"
        assert "malformed" in ranking.summary()


# -- preload:<path> is text, never a path to look at (row 8) ----------------------------------------------
HOSTILE_PRELOADS = [
    "~root/x", "~/x", "~", "~nosuchuser/x", "/etc/shadow", "/etc/passwd", "/proc/self/root/etc/passwd",
    "/dev/stdin", "/dev/zero", "/proc/self/fd/0", "/net/autofs/x", "../../etc/passwd", "./echo.bin",
    "echo.bin/../echo.bin", "//etc//passwd", "\udcff", "a\nb", "/" * 5000,
]


@pytest.fixture
def registered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[wasinn.WasiNnHost, Path]]:
    monkeypatch.chdir(tmp_path)
    model = tmp_path / "echo.bin"
    model.write_bytes(affine_model())
    # The host's own once-per-process work happens before a test records every file this process
    # touches, so that what is recorded is the guest's preload text alone: the hardware probe (the
    # first ranking's; it even runs `uname -p`) now, and no worker template starting in the background.
    wasinn.hardware.probe()
    with wasinn.WasiNnHost(limits=wasinn.Limits(worker_prestart=False)) as host:
        host.register_model("default", "echo.bin")  # a relative spelling, as on a command line
        yield host, model


@contextmanager
def record_lookups() -> Iterator[list[str]]:
    """Every file access :func:`record_file_access` sees, plus home-directory and link lookups."""
    seen: list[str]
    spied = [(os.path, "expanduser"), (os.path, "realpath"), (os, "readlink"), (pwd, "getpwnam"),
             (pwd, "getpwuid"), (Path, "expanduser"), (Path, "home")]
    saved = [(owner, name, getattr(owner, name)) for owner, name in spied]
    with record_file_access() as seen:
        def spy(label: str, real: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                seen.append(f"{label}{args!r}")
                return real(*args, **kwargs)
            return wrapper
        for owner, name, real in saved:
            setattr(owner, name, spy(name, real))
        try:
            yield seen
        finally:
            for owner, name, real in saved:
                setattr(owner, name, real)


@pytest.mark.parametrize("text", HOSTILE_PRELOADS)
def test_a_preload_path_is_never_expanded_resolved_or_looked_at(registered: tuple[wasinn.WasiNnHost, Path],
                                                                text: str) -> None:
    host, _ = registered
    guest = TrampolineGuest(host)
    raw = b"preload:" + text.encode("utf-8", "surrogateescape")
    with record_lookups() as seen:
        answer = guest.load([raw], encoding=WASMEDGE_GGML).errno
    assert answer in errnos(guest, ErrorCode.INVALID_ARGUMENT, ErrorCode.NOT_FOUND)
    guest.close()
    assert seen == []


@pytest.mark.parametrize("spelling", ["echo.bin", "absolute"])
def test_a_preload_path_as_the_embedder_spelled_it_still_works(registered: tuple[wasinn.WasiNnHost, Path],
                                                               spelling: str) -> None:
    host, model = registered
    text = str(model) if spelling == "absolute" else spelling
    guest = TrampolineGuest(host)
    with record_lookups() as seen:
        assert guest.load([f"preload:{text}".encode()], encoding=WASMEDGE_GGML).ok
    guest.close()
    assert [s for s in seen if "echo.bin" not in s] == []  # only the registered file itself is read


# -- log lines: escaped, and rate-limited per store (rows 9, 10) ------------------------------------------
@pytest.mark.parametrize("forged", ["ok\nwasinn: backend chose you", "\r\x1b[2Kcleared", "a\u2028b", "x\x00y",
                                    "\x85next", "\t\v\f"])
def test_runtime_messages_cannot_forge_log_lines(guest: TrampolineGuest, caplog: pytest.LogCaptureFixture,
                                                 forged: str) -> None:
    text = forged.encode().decode("unicode_escape")
    graph = guest.load([affine_model()]).value
    assert graph is not None
    context = guest.init_execution_context(graph).value
    assert context is not None
    entry = guest.state.context(context)

    def explode(*_: Any) -> None:
        raise RuntimeError(f"op type {text!s} is not registered")

    entry.compute = explode
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        assert guest.compute(context).errno == errno(guest, ErrorCode.RUNTIME_ERROR)
    messages = [r.getMessage() for r in caplog.records]
    assert messages and all(m.isprintable() for m in messages)
    assert printable(text) in caplog.text


def test_a_guests_failures_are_rate_limited_per_store(host: wasinn.WasiNnHost,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    noisy, quiet = TrampolineGuest(host), TrampolineGuest(host)
    with caplog.at_level(logging.WARNING, logger="wasinn"):
        for _ in range(2000):
            assert noisy.load([b"not a model"]).errno != 0
        lines = len(caplog.records)
        assert quiet.load([b"not a model"]).errno != 0  # another store has a budget of its own
    assert BURST <= lines < BURST + 50, lines  # the burst, then a trickle (the loop takes well under 25 s)
    assert len(caplog.records) == lines + 1
    noisy.state.guest_log._tokens = 1.0  # the next line after the drops says how many were dropped
    assert noisy.load([b"not a model"]).errno != 0
    assert "were dropped: rate limit" in caplog.records[-1].getMessage()
    noisy.close()
    quiet.close()


def test_guest_log_counts_what_it_drops() -> None:
    logger = logging.getLogger("wasinn.test.guestlog")
    logger.setLevel(logging.WARNING)
    log = GuestLog(burst=3, rate=0.0)
    written = [log.log(logger, logging.WARNING, f"line {i}") for i in range(10)]
    assert written == [True] * 3 + [False] * 7
    assert log.dropped == 7


# -- runtime memory, per context and per store (the mechanism behind rows 4 and 5) ------------------------
def test_context_budget_bounds_a_context_and_its_store() -> None:
    store = StoreBudget(100)
    a, b = ContextBudget(60, store), ContextBudget(60, store)
    a.hold("kv-cache", 60)
    with pytest.raises(WasiNnError) as too_much:
        a.hold("outputs", 1)
    assert too_much.value.code is ErrorCode.TOO_LARGE and "max_runtime_bytes_per_context" in too_much.value.message
    with pytest.raises(WasiNnError) as store_full:
        b.hold("kv-cache", 41)
    assert "max_runtime_bytes_per_store" in store_full.value.message
    assert (a.held, b.held, store.held) == (60, 0, 60)  # a refused hold changes nothing
    a.hold("kv-cache", 10)  # replacing an amount frees the difference
    b.hold("kv-cache", 60)
    assert store.held == 70
    a.release()
    b.release()
    assert store.held == 0


class Hungry(Recorder):
    """Holds runtime memory as an LLM backend would: some at init, the rest per compute."""

    def __init__(self, at_init: int, per_compute: int) -> None:
        super().__init__([ModelFormat("hungry")], detect=b"HUNGRY")
        self.at_init, self.per_compute = at_init, per_compute

    @hookimpl
    def init_execution_context(self, graph: Graph) -> Context:
        context = Context(graph)
        context.budget.hold("weights-scratch", self.at_init)
        return context

    @hookimpl
    def compute(self, context: Context) -> None:
        context.budget.hold("kv-cache", self.per_compute)


@pytest.mark.usefixtures("no_allow_list")
def test_contexts_charge_the_store_and_finalize_gives_it_back() -> None:
    hungry = Hungry(at_init=10, per_compute=40)
    # In-process: the test reads what the backend object holds (a worker's holds reach the store as
    # one "isolated worker" amount: tests/test_worker.py).
    limits = Limits(max_runtime_bytes_per_context=60, max_runtime_bytes_per_store=90, guest_models="in-process")
    with wasinn.WasiNnHost(backends={"hungry": hungry}, entry_points=False, limits=limits) as host:
        guest = TrampolineGuest(host)
        graph = guest.load([b"HUNGRY"]).value
        assert graph is not None
        first = guest.init_execution_context(graph).value
        second = guest.init_execution_context(graph).value
        assert first is not None and second is not None
        assert guest.compute(first).ok  # 10 + 40
        assert guest.compute(second).errno == errno(guest, ErrorCode.TOO_LARGE)  # 50 + 10 + 40 > 90
        assert guest.state.tables.budget.held == 60
        assert guest.finalize_execution_context(first).ok
        assert guest.state.tables.budget.held == 10
        assert guest.compute(second).ok
        guest.close()


@pytest.mark.usefixtures("no_allow_list")
def test_what_init_holds_counts_against_the_store() -> None:
    hungry = Hungry(at_init=30, per_compute=0)
    limits = Limits(max_runtime_bytes_per_context=60, max_runtime_bytes_per_store=70, guest_models="in-process")
    with wasinn.WasiNnHost(backends={"hungry": hungry}, entry_points=False, limits=limits) as host:
        guest = TrampolineGuest(host)
        graph = guest.load([b"HUNGRY"]).value
        assert graph is not None
        assert guest.init_execution_context(graph).ok
        assert guest.init_execution_context(graph).ok
        # 90 > 70: the third context is not made
        assert guest.init_execution_context(graph).errno == errno(guest, ErrorCode.TOO_LARGE)
        assert guest.state.context_count == 2 and guest.state.tables.budget.held == 60
        guest.close()


# -- a component's compute brings every input (row 14) ----------------------------------------------------
def test_component_compute_never_reuses_the_previous_inputs(host: wasinn.WasiNnHost) -> None:
    engine = wasmtime.Engine()
    store = host.new_component_store(engine)
    state = store.data()
    assert isinstance(state, ComponentState)
    two_inputs = wasinn_test_model_with_two_inputs()
    context = state.init_execution_context(state.load([two_inputs], wasinn.GraphEncoding.AUTODETECT,
                                                      wasinn.ExecutionTarget.CPU))
    this = ResourceHost.own(context, CONTEXT_TYPE_ID)

    def tensor() -> ResourceHost:
        data = np.ones((1, 4), np.float32).tobytes()
        return ResourceHost.own(state.add_tensor(TensorEntry((1, 4), TensorType.F32, data)), TENSOR_TYPE_ID)

    def compute(names: Sequence[str]) -> str:
        result = context_compute(store, this, [(name, tensor()) for name in names])
        if isinstance(result, list):
            return "ok"
        return state.error(result.rep).code.value

    assert compute(["a", "b"]) == "ok"
    assert compute([]) == ErrorCode.INVALID_ARGUMENT.value
    assert compute(["a"]) == ErrorCode.INVALID_ARGUMENT.value  # "b" would be the last call's
    assert compute(["b", "a"]) == "ok"
    store.close()


def wasinn_test_model_with_two_inputs() -> bytes:
    from wasinn_test_backends import make_model
    spec = {"name": "x", "dtype": "f32", "shape": [1, 4]}
    return make_model({"inputs": [{**spec, "name": "a"}, {**spec, "name": "b"}],
                       "outputs": [{**spec, "name": "y"}], "scale": 1, "bias": 0})
