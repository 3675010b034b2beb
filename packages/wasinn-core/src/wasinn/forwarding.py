"""One way to write a backend package: hooks declared in a light module, implemented in a heavy one.

wasinn imports every installed backend to list it (``wasinn backends``, each ``WasiNnHost``), and
calls only ``backend_info`` then. So the module the entry point names holds ``backend_info`` (cheap:
it never imports the runtime) and *declares* the other hooks, which import the implementation on
their first call::

    # wasinn_backend_mine/__init__.py: the entry point names this module
    from wasinn.forwarding import forward_hooks
    from wasinn_backend_mine._info import backend_info

    forward_hooks(__name__, "wasinn_backend_mine.backend:MineBackend",
                  hooks=("can_handle", "load", "init_execution_context", "set_input", "compute",
                         "get_output", "unload", "finalize_execution_context"))

:func:`forward_hooks` defines one ``@hookimpl`` function per hook in that module, each with the
hookspec's own parameters (so pluggy checks them like any hook function, and callers may pass them
by name). The first call of any of them imports ``wasinn_backend_mine.backend``, once, whichever
thread makes it (:func:`deferred`), instantiates ``MineBackend`` if the target is a class (as wasinn
does with an entry point that names one) and checks that it has every hook with the hookspec's
parameters. Each call then hands its arguments to the implementation's method of the same name,
looked up at each call. The implementation's methods are plain methods: the hook is marked once, in
the declaring module.

:func:`lazy_exports` is the same idea for the package's other public names (PEP 562): imported on
first use, not when wasinn lists the backend.
"""

from __future__ import annotations

import importlib
import inspect
import linecache
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, TypeVar

from wasinn import hookspecs

__all__ = ["Forwarders", "deferred", "forward_hooks", "lazy_exports"]

_T = TypeVar("_T")


def deferred(load: Callable[[], _T]) -> Callable[[], _T]:
    """A function that returns ``load()``, called once, on the first call, whichever thread makes it.

    For a backend package whose hook functions import the implementation only when first called, so
    that discovery (``wasinn backends``) imports nothing but ``backend_info`` (:func:`forward_hooks`
    is built on it)::

        _backend = deferred(lambda: importlib.import_module("my_backend.backend").MyBackend())

        @hookimpl
        def load(model: ModelDescription, hw: Hardware) -> Graph:
            return _backend().load(model, hw)

    A ``load`` that raises is tried again on the next call.
    """
    lock = threading.Lock()
    loaded: list[_T] = []

    def get() -> _T:
        if not loaded:
            with lock:
                if not loaded:
                    loaded.append(load())
        return loaded[0]

    return get


# -- the hookspecs, read once ------------------------------------------------------------------------
def _hookspecs() -> dict[str, Any]:
    marker = f"{hookspecs.PROJECT}_spec"  # the attribute pluggy's HookspecMarker sets
    return {name: value for name, value in vars(hookspecs).items() if hasattr(value, marker)}


_SPECS = _hookspecs()
#: Hooks that are not forwarded: wasinn calls them when it lists backends, so they must be cheap.
_NOT_FORWARDED = {"backend_info": "wasinn asks it when it lists backends: define it (cheaply) in the package, "
                                  "without importing the runtime"}


def _parameters(hook: str) -> tuple[str, ...]:
    return tuple(inspect.signature(_SPECS[hook]).parameters)


# -- the forwarder functions -------------------------------------------------------------------------
# Each is compiled from source built from its hookspec's signature (as dataclasses builds __init__):
# pluggy reads a hook function's parameter names from its code object, so only a real function
# with those parameters passes its checks, and callers may pass the arguments by name. The names
# come from wasinn.hookspecs alone. One factory per hook, compiled once per process.
_Factory = Callable[[Callable[[], Any]], Callable[..., Any]]
_FACTORIES: dict[str, _Factory] = {}


def _factory(hook: str) -> _Factory:
    factory = _FACTORIES.get(hook)
    if factory is None:
        arguments = ", ".join(_parameters(hook))
        source = (f"def factory(implementation):\n"
                  f"    def {hook}({arguments}):\n"
                  f"        return implementation().{hook}({arguments})\n"
                  f"    return {hook}\n")
        filename = f"<wasinn.forwarding: {hook}>"
        namespace: dict[str, Any] = {}
        exec(compile(source, filename, "exec"), namespace)
        # Tracebacks through a forwarder show its line.
        linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
        factory = _FACTORIES[hook] = namespace["factory"]  # a race compiles it twice: harmless
    return factory


@dataclass(frozen=True)
class Forwarders:
    """What :func:`forward_hooks` defined: the hooks of ``module`` that call ``target``."""

    module: str
    target: str
    hooks: tuple[str, ...]
    #: The implementation (the target, instantiated if it is a class), imported on the first call.
    implementation: Callable[[], Any] = field(repr=False, compare=False)


def forward_hooks(module: str, target: str, *, hooks: Iterable[str]) -> Forwarders:
    """Define ``hooks`` in ``module`` as ``@hookimpl`` functions that call ``target``'s.

    ``module`` is the declaring module's ``__name__`` (the module the ``wasinn.backends`` entry point
    names). ``target`` says where the implementation is, in entry-point syntax: ``"pkg.mod"`` (a
    module of functions), or ``"pkg.mod:Name"`` (a class, instantiated once with no arguments, or
    any object). It is imported when one of the hooks is first called, never before.

    Checked now: every name is a hook of :mod:`wasinn.hookspecs`, listed once, not yet defined in
    ``module``, and not ``backend_info`` (which wasinn calls when it lists backends). Checked on the
    first call: the target has each hook, with the hookspec's parameters. Raises ``ValueError``
    (here) or ``TypeError`` (then) naming the problem.
    """
    namespace = vars(_module(module))
    names = tuple(hooks)
    _check_target_syntax(target)
    for hook in names:
        if hook not in _SPECS:
            raise ValueError(f"{module}: {hook!r} is not a wasinn hook (hooks: {', '.join(_SPECS)})")
        if hook in _NOT_FORWARDED:
            raise ValueError(f"{module}: {hook} cannot be forwarded: {_NOT_FORWARDED[hook]}")
        if names.count(hook) > 1:
            raise ValueError(f"{module}: hook {hook} is listed twice")
        existing = namespace.get(hook)
        if existing is not None and getattr(existing, "_wasinn_forwards_to", None) is None:
            raise ValueError(f"{module}.{hook} is already defined: each hook is defined once")
    implementation = deferred(lambda: _load(target, names))
    for hook in names:
        function = _factory(hook)(implementation)
        function.__module__ = module
        function.__qualname__ = hook
        function.__doc__ = f"The ``{hook}`` hook, forwarded to ``{target}`` (imported on the first call)."
        function.__annotations__ = dict(_SPECS[hook].__annotations__)
        function._wasinn_forwards_to = target  # type: ignore[attr-defined]  # (a module reloaded redefines it)
        namespace[hook] = hookspecs.hookimpl(function)
    return Forwarders(module, target, names, implementation)


def lazy_exports(module: str, exports: Mapping[str, Sequence[str]]) -> None:
    """Give ``module`` names imported from other modules on first use (PEP 562).

    ``exports`` maps a module to the names it provides: ``{"pkg.backend": ("PkgBackend",)}`` makes
    ``pkg.PkgBackend`` (and ``from pkg import PkgBackend``) import ``pkg.backend`` when first used.
    ``dir(module)`` lists them. Declare them for type checkers under ``if TYPE_CHECKING:``.
    """
    namespace = vars(_module(module))
    if "__getattr__" in namespace:
        raise ValueError(f"{module} already defines __getattr__")
    sources = {name: source for source, names in exports.items() for name in names}

    def __getattr__(name: str) -> Any:
        source = sources.get(name)
        if source is None:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(source), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *sources})

    namespace["__getattr__"] = __getattr__
    namespace["__dir__"] = __dir__


# -- helpers -----------------------------------------------------------------------------------------
def _module(name: str) -> ModuleType:
    found = sys.modules.get(name)
    if found is None:
        raise ValueError(f"no module {name!r} is being imported: pass the declaring module's __name__")
    return found


def _check_target_syntax(target: str) -> None:
    path, colon, attributes = target.partition(":")
    parts = path.split(".") + (attributes.split(".") if colon else [])
    if not all(part.isidentifier() for part in parts):
        raise ValueError(f"target {target!r}: write 'package.module' or 'package.module:Name'")


def _load(target: str, hooks: tuple[str, ...]) -> Any:
    path, _, attributes = target.partition(":")
    found: Any = importlib.import_module(path)
    for attribute in filter(None, attributes.split(".")):
        found = getattr(found, attribute)
    if inspect.isclass(found):  # as wasinn treats an entry point that names a class
        found = found()
    for hook in hooks:
        _check_implementation(target, hook, getattr(found, hook, None))
    return found


def _check_implementation(target: str, hook: str, implementation: object) -> None:
    expected = _parameters(hook)
    if not callable(implementation):
        raise TypeError(f"{target} does not implement hook {hook}({', '.join(expected)})")
    try:
        signature = inspect.signature(implementation)
    except (TypeError, ValueError):  # no signature to read (a builtin): the call will tell
        return
    positional = [p for p in signature.parameters.values()
                  if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    takes_any = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values())
    try:
        signature.bind(*expected)
    except TypeError as exc:
        raise TypeError(f"{target}'s {hook}{signature} cannot take the hook's arguments "
                        f"({', '.join(expected)}): {exc}") from None
    names = tuple(p.name for p in positional[:len(expected)])
    if not takes_any and names != expected:
        raise TypeError(f"{target}'s {hook}{signature} names its parameters ({', '.join(names)}), the hookspec "
                        f"({', '.join(expected)})")
