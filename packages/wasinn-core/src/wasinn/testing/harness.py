"""The conformance kit's harness, usable on its own in a backend's tests.

:class:`KitHarness` builds hosts that know exactly one backend (found through its entry point),
spies on the backend's lifecycle hooks (:class:`HookSpy`), captures what wasinn logs, hands out
drivers (:mod:`wasinn.testing.drivers`) that run the wasi-nn operations, and closes everything it
made. :func:`import_report` discovers a backend in a fresh interpreter, to see what that imports.

The values the drivers return and the tests compare (:class:`Outcome`, ``expect_*``,
:func:`sample_input`, the model samples) live in :mod:`wasinn.testing.values`; both modules'
names are importable from here too, as they were before the split.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any

import wasmtime

from wasinn.enums import TensorType
from wasinn.hardware import Hardware
from wasinn.hookspecs import Context, Graph
from wasinn.host.host import WasiNnHost
from wasinn.limits import Limits
from wasinn.plugins import Backend

# Every name below was defined here before values and drivers had modules of their own; the
# ``X as X`` ones are only re-exported, for the tests that import them from this module.
from wasinn.testing.drivers import Driver as Driver
from wasinn.testing.drivers import GuestDriver, LogCapture, StateDriver, abi_for
from wasinn.testing.values import ALL_TARGETS as ALL_TARGETS
from wasinn.testing.values import FOREIGN_SAMPLES, Outcome, bf16_to_f32, f32_to_bf16, sample_input
from wasinn.testing.values import JUNK_BUILDERS as JUNK_BUILDERS
from wasinn.testing.values import check_values as check_values
from wasinn.testing.values import decode as decode
from wasinn.testing.values import expect_error as expect_error
from wasinn.testing.values import expect_ok as expect_ok
from wasinn.testing.values import logical as logical

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
