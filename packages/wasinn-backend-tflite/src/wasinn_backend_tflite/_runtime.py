"""Which TFLite interpreter to use, LiteRT (``ai-edge-litert``) or ``tflite-runtime``, found lazily.

Both ship the same ``Interpreter`` API (``ai_edge_litert.interpreter`` and
``tflite_runtime.interpreter``), so the backend has one code path over either. LiteRT is preferred:
tflite-runtime's last release (2.14) does not work with numpy 2. ``WASINN_TFLITE_INTERPRETER``
(``litert`` or ``tflite-runtime``) forces one.

Finding and describing a runtime (:func:`select`) never imports it (``find_spec`` + the
distribution's metadata); :func:`api` imports it on first use.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from wasinn.plugins import distribution_version

INTERPRETER_ENV = "WASINN_TFLITE_INTERPRETER"
DELEGATES_ENV = "WASINN_TFLITE_DELEGATES"


@dataclass(frozen=True, slots=True)
class Runtime:
    """An installed interpreter package."""

    key: str  # litert | tflite-runtime
    distribution: str
    module: str
    version: str | None


_KNOWN = {
    "litert": ("ai-edge-litert", "ai_edge_litert"),
    "tflite-runtime": ("tflite-runtime", "tflite_runtime"),
}
_ALIASES = {"ai-edge-litert": "litert", "ai_edge_litert": "litert", "tflite_runtime": "tflite-runtime",
            "tflite": "tflite-runtime"}


def _installed(key: str) -> Runtime | None:
    distribution, module = _KNOWN[key]
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        return None
    return Runtime(key, distribution, module, distribution_version(distribution))


def _numpy_problem(runtime: Runtime) -> str | None:
    # tflite-runtime 2.14 (its last release) is built against numpy 1: with numpy 2 it imports but
    # every Interpreter() fails with "_ARRAY_API not found".
    if runtime.key == "tflite-runtime" and int(np.__version__.split(".")[0]) >= 2:
        return f"tflite-runtime {runtime.version or ''} needs numpy<2 (numpy {np.__version__} is installed)"
    return None


def select(environ: Mapping[str, str] | None = None) -> Runtime | str:
    """The interpreter to use, or why there is none (a reason string). Imports nothing."""
    env = os.environ if environ is None else environ
    forced = env.get(INTERPRETER_ENV, "").strip().lower()
    if forced:
        key = _ALIASES.get(forced, forced)
        if key not in _KNOWN:
            return f"{INTERPRETER_ENV}={forced}: choose litert or tflite-runtime"
        runtime = _installed(key)
        if runtime is None:
            return f"{INTERPRETER_ENV}={forced} but {_KNOWN[key][0]} is not installed"
        return _numpy_problem(runtime) or runtime
    problems = []
    for key in ("litert", "tflite-runtime"):
        runtime = _installed(key)
        if runtime is None:
            continue
        problem = _numpy_problem(runtime)
        if problem is None:
            return runtime
        problems.append(problem)
    return "; ".join(problems) or "no TFLite interpreter is installed (pip install ai-edge-litert)"


@dataclass(frozen=True, slots=True)
class Api:
    """The parts of an interpreter module the backend uses."""

    runtime: Runtime
    Interpreter: Any
    load_delegate: Any
    OpResolverType: Any


_api_lock = threading.Lock()


@functools.cache
def _import(module: str) -> ModuleType:
    return importlib.import_module(f"{module}.interpreter")


def api(runtime: Runtime) -> Api:
    """Import the runtime's interpreter module (once)."""
    with _api_lock:
        interpreter = _import(runtime.module)
    return Api(runtime, interpreter.Interpreter, interpreter.load_delegate, interpreter.OpResolverType)


# -- delegates -----------------------------------------------------------------------------------
# Loading a delegate dlopen()s a native library, and a model's config can come from the guest
# (load_by_name_with_config). So a config may only *choose* among libraries the host allowed:
# WASINN_TFLITE_DELEGATES, allow_delegate(), or the Edge TPU runtime installed on the system.

_allowed: dict[str, str] = {}  # library path or name -> kind (gpu | tpu | cpu)
_allowed_lock = threading.Lock()
DELEGATE_KINDS = ("gpu", "tpu", "cpu")


@dataclass(frozen=True, slots=True)
class Delegate:
    """A delegate library the host allows, and the target it serves."""

    library: str
    kind: str

    @property
    def label(self) -> str:
        return Path(self.library).name


def allow_delegate(library: str | os.PathLike[str], kind: str = "gpu") -> None:
    """Let models use the TFLite delegate in ``library`` (a path or a name ``dlopen`` finds) for
    target ``kind`` (gpu, tpu or cpu). Same as listing ``KIND=LIBRARY`` in WASINN_TFLITE_DELEGATES."""
    if kind not in DELEGATE_KINDS:
        raise ValueError(f"delegate kind {kind!r}: choose gpu, tpu or cpu")
    with _allowed_lock:
        _allowed[os.fspath(library)] = kind


def _from_env(environ: Mapping[str, str]) -> list[Delegate]:
    found = []
    for entry in environ.get(DELEGATES_ENV, "").split(os.pathsep):
        kind, sep, library = entry.strip().partition("=")
        if not sep:
            kind, library = "gpu", entry.strip()
        kind = kind.strip().lower()
        if library and kind in DELEGATE_KINDS:
            found.append(Delegate(library.strip(), kind))
    return found


@functools.cache
def _edgetpu() -> str | None:
    import ctypes.util  # not at the top: it costs discovery (which imports this module) a few ms

    return ctypes.util.find_library("edgetpu")


def allowed_delegates(environ: Mapping[str, str] | None = None) -> list[Delegate]:
    """Every delegate the host allows, in order of preference."""
    env = os.environ if environ is None else environ
    with _allowed_lock:
        found = [Delegate(library, kind) for library, kind in _allowed.items()]
    found.extend(_from_env(env))
    edgetpu = _edgetpu()
    if edgetpu:
        found.append(Delegate(edgetpu, "tpu"))
    return found


def find_delegate(name: str, environ: Mapping[str, str] | None = None) -> Delegate | None:
    """The allowed delegate that ``name`` (a library path, file name or kind) refers to."""
    for delegate in allowed_delegates(environ):
        if name in (delegate.library, delegate.label, delegate.kind):
            return delegate
    return None
