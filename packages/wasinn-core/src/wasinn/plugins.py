"""Backend discovery: entry points of group ``wasinn.backends``, each loaded on its own.

A backend that fails to import, lacks a required hook or whose ``backend_info`` raises is kept in
the list as *unavailable*, with the reason, and never stops the others (pluggy's own
``load_setuptools_entrypoints`` would let one broken plugin abort them all).

``WASINN_BACKENDS`` (allow-list) and ``WASINN_DISABLE_BACKENDS`` (deny-list) take comma-separated
backend names; a denied or not-allowed backend is not even imported.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from wasinn import hookspecs
from wasinn.distributions import EntryPoint, entry_points
from wasinn.hookspecs import REQUIRED_HOOKS, BackendInfo

# Also importable from here, where they were first defined (backends import them from wasinn.plugins):
from wasinn.distributions import distribution_version as distribution_version  # isort: skip
from wasinn.forwarding import deferred as deferred  # isort: skip

log = logging.getLogger("wasinn.plugins")

ENTRY_POINT_GROUP = "wasinn.backends"
ALLOW_ENV = "WASINN_BACKENDS"
DENY_ENV = "WASINN_DISABLE_BACKENDS"


@dataclass
class Backend:
    """One discovered backend, available or not."""

    name: str
    distribution: str | None = None
    version: str | None = None
    info: BackendInfo | None = None
    unavailable: str | None = None
    plugin: object | None = None
    hooks: dict[str, Callable[..., Any]] = field(default_factory=dict)

    @property
    def available(self) -> bool:
        return self.unavailable is None

    def hook(self, name: str) -> Callable[..., Any] | None:
        return self.hooks.get(name)

    def to_dict(self) -> dict[str, Any]:
        info = self.info
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "available": self.available,
            "unavailable_reason": self.unavailable,
            "runtime": info.runtime if info else None,
            "runtime_version": info.runtime_version if info else None,
            "formats": [f.value for f in info.formats] if info else [],
            "targets": [t.value for t in info.targets] if info else [],
            "tensor_types": [t.value for t in info.tensor_types] if info else [],
            "summary": info.summary if info else "",
        }


def parse_name_list(value: str | None) -> list[str] | None:
    """``"onnx, tflite"`` → ``["onnx", "tflite"]``; unset or blank → ``None``."""
    if value is None or not value.strip():
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def _instantiate(obj: object) -> object:
    # An entry point may name a module, an instance, or a class with a no-argument constructor.
    return obj() if inspect.isclass(obj) else obj


class BackendRegistry:
    """The backends one host knows about, with a pluggy manager that validates their hooks."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self._backends: dict[str, Backend] = {}

    def __iter__(self) -> Any:
        return iter(self._backends.values())

    def __len__(self) -> int:
        return len(self._backends)

    def get(self, name: str) -> Backend | None:
        return self._backends.get(name)

    @property
    def names(self) -> list[str]:
        return list(self._backends)

    def available(self) -> list[Backend]:
        return [b for b in self._backends.values() if b.available]

    def register(
        self,
        name: str,
        plugin: object,
        *,
        distribution: str | None = None,
        version: str | None = None,
    ) -> Backend:
        """Register a backend object (module, instance or class) under ``name``."""
        backend = Backend(name=name, distribution=distribution, version=version)
        self._backends[name] = backend
        try:
            backend.plugin = _instantiate(plugin)
            self.manager.register(backend.plugin, name=name)
        except Exception as exc:  # bad hook signatures, duplicate registration, constructor failure
            backend.unavailable = f"could not register: {exc}"
            log.debug("backend %s unavailable: %s", name, backend.unavailable)
            return backend
        for caller in self.manager.get_hookcallers(backend.plugin) or []:
            for impl in caller.get_hookimpls():
                if impl.plugin is backend.plugin:
                    backend.hooks[caller.name] = impl.function
        missing = [hook for hook in REQUIRED_HOOKS if hook not in backend.hooks]
        if missing:
            backend.unavailable = f"does not implement hook(s): {', '.join(missing)}"
            log.debug("backend %s unavailable: %s", name, backend.unavailable)
            return backend
        try:
            info = backend.hooks["backend_info"]()
            if not isinstance(info, BackendInfo):
                raise TypeError(f"backend_info returned {type(info).__name__}, not BackendInfo")
            backend.info = info
            backend.unavailable = info.unavailable
        except Exception as exc:
            backend.unavailable = f"backend_info failed: {exc}"
            log.debug("backend %s unavailable: %s", name, backend.unavailable)
        return backend

    def register_unavailable(self, name: str, reason: str, *, distribution: str | None = None,
                             version: str | None = None) -> Backend:
        backend = Backend(name=name, distribution=distribution, version=version, unavailable=reason)
        self._backends[name] = backend
        return backend


def _entry_points(group: str = ENTRY_POINT_GROUP) -> list[EntryPoint]:
    """The group's entry points (importlib.metadata's answer), sorted by name."""
    return entry_points(group)


def discover(
    *,
    allow: Iterable[str] | None = None,
    deny: Iterable[str] | None = None,
    extra: Mapping[str, object] | None = None,
    use_entry_points: bool = True,
    environ: Mapping[str, str] | None = None,
) -> BackendRegistry:
    """Find and register backends.

    ``allow``/``deny`` default to ``WASINN_BACKENDS``/``WASINN_DISABLE_BACKENDS``. ``extra`` adds
    backends by object (for embedders and tests); the allow/deny lists apply to them too.
    """
    env = os.environ if environ is None else environ
    allowed = list(allow) if allow is not None else parse_name_list(env.get(ALLOW_ENV))
    denied = set(deny if deny is not None else parse_name_list(env.get(DENY_ENV)) or ())

    def wanted(name: str) -> bool:
        if name in denied:
            log.debug("backend %s disabled by the deny-list", name)
            return False
        if allowed is not None and name not in allowed:
            log.debug("backend %s not in the allow-list", name)
            return False
        return True

    registry = BackendRegistry()
    if use_entry_points:
        for ep in _entry_points():
            if not wanted(ep.name) or registry.get(ep.name):
                continue
            dist_name, dist_version = ep.distribution()
            try:
                plugin = ep.load()
            except BaseException as exc:  # ImportError, but also SystemExit from a careless plugin
                if isinstance(exc, KeyboardInterrupt):
                    raise
                registry.register_unavailable(
                    ep.name, f"import failed: {type(exc).__name__}: {exc}",
                    distribution=dist_name, version=dist_version,
                )
                log.debug("backend %s unavailable: import of %s failed: %s", ep.name, ep.value, exc)
                continue
            registry.register(ep.name, plugin, distribution=dist_name, version=dist_version)
    for name, plugin in (extra or {}).items():
        if wanted(name):
            registry.register(name, plugin)
    if allowed is not None:
        for name in allowed:
            if registry.get(name) is None:
                log.warning("backend %s is in the allow-list but is not installed", name)
    return registry
