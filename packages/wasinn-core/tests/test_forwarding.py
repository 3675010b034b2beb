"""wasinn.forwarding: a backend package declares its hooks, the implementation is imported on the first
call. Each test writes its own backend (a declaring module, an implementation module, a dist-info with
the entry point) into a fresh folder on sys.path."""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import wasinn
from wasinn import hookspecs
from wasinn.forwarding import Forwarders, forward_hooks, lazy_exports
from wasinn.plugins import BackendRegistry
from wasinn.testing.guest import TrampolineGuest
from wasinn_test_backends import affine_model

FORWARDED = ("detect_format", "can_handle", "load", "unload", "init_execution_context",
             "finalize_execution_context", "set_input", "compute", "get_output")

PLUGIN = '''
"""A backend declared the one way: backend_info here, the other hooks forwarded."""
from wasinn import BackendInfo, ModelFormat, hookimpl
from wasinn.forwarding import forward_hooks
from wasinn_test_backends import FORMAT
from wasinn_test_backends.fake import TENSOR_TYPES


@hookimpl
def backend_info() -> BackendInfo:
    return BackendInfo(runtime="numpy", runtime_version=None, formats=(ModelFormat(FORMAT),),
                       tensor_types=TENSOR_TYPES)


HOOKS = forward_hooks(__name__, "{impl}:Impl", hooks={hooks!r})
'''

IMPL = '''
"""The implementation: the fake backend's, counted."""
import time

from wasinn_test_backends.fake import FakeBackend

INSTANCES = []


class Impl(FakeBackend):
    def __init__(self) -> None:
        time.sleep(0.05)  # long enough for every thread to arrive while the first is still importing
        INSTANCES.append(self)
'''


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path; the modules imported from it are forgotten afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("fwd_"):
            del sys.modules[name]


def install(site: Path, name: str, hooks: tuple[str, ...] = FORWARDED, impl: str = IMPL) -> None:
    """Install backend ``name`` the way pip would: modules plus a dist-info naming the declaring module."""
    (site / f"fwd_{name}.py").write_text(PLUGIN.format(impl=f"fwd_{name}_impl", hooks=hooks))
    (site / f"fwd_{name}_impl.py").write_text(impl)
    dist = site / f"fwd_{name}-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fwd-{name}\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[wasinn.backends]\n{name} = fwd_{name}\n")


def test_a_forwarded_backend_serves_a_guest_through_the_default_ranking(
        site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(site, "served")
    monkeypatch.setenv("WASINN_BACKENDS", "served")
    with wasinn.WasiNnHost() as host:
        backend = host.registry.get("served")
        assert backend is not None and backend.available, backend
        assert sorted(backend.hooks) == sorted({"backend_info", *FORWARDED})
        assert "fwd_served_impl" not in sys.modules, "discovery imported the implementation"
        guest = TrampolineGuest(host)
        try:
            graph = guest.load([affine_model()])
            assert graph.ok, graph.errno
            [y] = guest.infer(graph.value, [np.arange(4, dtype=np.float32).reshape(1, 4)],  # type: ignore[arg-type]
                              [(np.float32, (1, 4))])
        finally:
            guest.close()
    np.testing.assert_array_equal(y, [[1, 3, 5, 7]])  # 2x + 1, computed by the implementation
    assert len(sys.modules["fwd_served_impl"].INSTANCES) == 1


def test_forwarders_have_the_hookspecs_parameters(site: Path) -> None:
    install(site, "signatures")
    plugin = importlib.import_module("fwd_signatures")
    for hook in FORWARDED:
        function, spec = getattr(plugin, hook), getattr(hookspecs, hook)
        expected = tuple(inspect.signature(spec).parameters)
        # pluggy reads the names from the code object: they are the real parameters
        assert function.__code__.co_varnames[:function.__code__.co_argcount] == expected, hook
        assert hasattr(function, "wasinn_impl"), f"{hook} is not marked @hookimpl"
        assert function.__module__ == "fwd_signatures" and function.__name__ == hook
    assert plugin.HOOKS == Forwarders("fwd_signatures", "fwd_signatures_impl:Impl", FORWARDED,
                                      plugin.HOOKS.implementation)
    # arguments by name, as tests and embedders call a backend's functions
    answer = plugin.detect_format(builders=[affine_model()])
    assert answer == "wasinn-test"
    with pytest.raises(TypeError):
        plugin.detect_format(model=[affine_model()])
    # and pluggy accepts them: the registry validates every hook's argument names against the specs
    registry = BackendRegistry()
    assert registry.register("signatures", plugin).available


def test_the_implementation_is_imported_once_whichever_thread_calls_first(site: Path) -> None:
    install(site, "threads")
    plugin = importlib.import_module("fwd_threads")
    assert "fwd_threads_impl" not in sys.modules
    answers: list[Any] = []
    threads = [threading.Thread(target=lambda: answers.append(plugin.detect_format([affine_model()])))
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == ["wasinn-test"] * 8
    impl = sys.modules["fwd_threads_impl"]
    assert len(impl.INSTANCES) == 1 and plugin.HOOKS.implementation() is impl.INSTANCES[0]


def test_each_call_looks_the_method_up(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A method replaced after the first call is the one called (benchmarks time hooks that way).
    install(site, "lookup")
    plugin = importlib.import_module("fwd_lookup")
    assert plugin.detect_format([affine_model()]) == "wasinn-test"
    monkeypatch.setattr(sys.modules["fwd_lookup_impl"].Impl, "detect_format", lambda self, builders: "replaced")
    assert plugin.detect_format([affine_model()]) == "replaced"


def test_a_failed_import_is_the_hooks_error_and_is_tried_again(site: Path) -> None:
    install(site, "retry", impl="raise ImportError('the runtime is missing')\n")
    plugin = importlib.import_module("fwd_retry")
    for _ in range(2):
        with pytest.raises(ImportError, match="the runtime is missing"):
            plugin.detect_format([affine_model()])
    (site / "fwd_retry_impl.py").write_text(IMPL)
    sys.modules.pop("fwd_retry_impl", None)
    importlib.invalidate_caches()
    assert plugin.detect_format([affine_model()]) == "wasinn-test"


@pytest.fixture
def scratch(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("fwd_scratch")
    monkeypatch.setitem(sys.modules, "fwd_scratch", module)
    return module


@pytest.mark.parametrize(("target", "hooks", "message"), [
    ("pkg.mod:Impl", ("lod",), "'lod' is not a wasinn hook"),
    ("pkg.mod:Impl", ("backend_info",), "backend_info cannot be forwarded"),
    ("pkg.mod:Impl", ("load", "load"), "hook load is listed twice"),
    ("pkg.mod:Impl", ("defined",), "is already defined"),
    ("pkg mod:Impl", ("load",), "target 'pkg mod:Impl'"),
    ("pkg.mod:", ("load",), "target 'pkg.mod:'"),
    ("pkg.mod:Impl()", ("load",), "target 'pkg.mod:Impl()'"),
])
def test_a_wrong_declaration_is_refused_at_import(scratch: types.ModuleType, target: str, hooks: tuple[str, ...],
                                                  message: str) -> None:
    scratch.defined = "x"
    if hooks == ("defined",):
        scratch.load = lambda model, hw: None
        hooks = ("load",)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        forward_hooks("fwd_scratch", target, hooks=hooks)
    assert not hasattr(scratch, "unload")


def test_the_declaring_module_must_be_importing() -> None:
    with pytest.raises(ValueError, match="no module 'fwd_nowhere'"):
        forward_hooks("fwd_nowhere", "pkg.mod", hooks=("load",))


@pytest.mark.parametrize(("impl", "message"), [
    ("class Impl:\n    def load(self, model, hw): ...\n", r"does not implement hook compute\(context\)"),
    ("class Impl:\n    def load(self, model, hw): ...\n    compute = 3\n", "does not implement hook compute"),
    ("class Impl:\n    def load(self, description, hw): ...\n    def compute(self, context): ...\n",
     r"names its parameters \(description, hw\), the hookspec \(model, hw\)"),
    ("class Impl:\n    def load(self, model): ...\n    def compute(self, context): ...\n",
     "cannot take the hook's arguments"),
])
def test_the_implementation_is_checked_on_the_first_call(site: Path, scratch: types.ModuleType, impl: str,
                                                         message: str) -> None:
    (site / "fwd_checked_impl.py").write_text(impl)
    forward_hooks("fwd_scratch", "fwd_checked_impl:Impl", hooks=("load", "compute"))
    with pytest.raises(TypeError, match=message):
        scratch.compute(None)


def test_an_implementation_may_take_any_arguments(site: Path, scratch: types.ModuleType) -> None:
    (site / "fwd_loose_impl.py").write_text("def load(*args, **kwargs):\n    return args\n")
    forward_hooks("fwd_scratch", "fwd_loose_impl", hooks=("load",))
    assert scratch.load("m", "hw") == ("m", "hw")


def test_a_reloaded_module_declares_its_hooks_again(site: Path) -> None:
    install(site, "reloaded")
    plugin = importlib.import_module("fwd_reloaded")
    first = plugin.load
    assert importlib.reload(plugin) is plugin
    assert plugin.load is not first and plugin.HOOKS.hooks == FORWARDED


def test_lazy_exports_import_on_first_use(site: Path, scratch: types.ModuleType) -> None:
    (site / "fwd_exported.py").write_text("LOADED = True\nclass Thing:\n    pass\n")
    lazy_exports("fwd_scratch", {"fwd_exported": ("Thing", "LOADED")})
    assert "fwd_exported" not in sys.modules
    assert {"Thing", "LOADED"} <= set(dir(scratch))
    assert scratch.Thing is sys.modules["fwd_exported"].Thing
    assert "Thing" in vars(scratch)  # kept: the next use is a plain attribute
    with pytest.raises(AttributeError, match="module 'fwd_scratch' has no attribute 'Other'"):
        scratch.Other  # noqa: B018
    with pytest.raises(ValueError, match="already defines __getattr__"):
        lazy_exports("fwd_scratch", {"fwd_exported": ("LOADED",)})

