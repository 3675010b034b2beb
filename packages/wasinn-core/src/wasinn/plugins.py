"""Backend discovery: entry points of group ``wasinn.backends``, each loaded on its own.

A backend that fails to import, lacks a required hook or whose ``backend_info`` raises is kept in
the list as *unavailable*, with the reason, and never stops the others (pluggy's own
``load_setuptools_entrypoints`` would let one broken plugin abort them all).

``WASINN_BACKENDS`` (allow-list) and ``WASINN_DISABLE_BACKENDS`` (deny-list) take comma-separated
backend names; a denied or not-allowed backend is not even imported.
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import inspect
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pluggy

from wasinn import hookspecs
from wasinn.hookspecs import BackendInfo

log = logging.getLogger("wasinn.plugins")

ENTRY_POINT_GROUP = "wasinn.backends"
ALLOW_ENV = "WASINN_BACKENDS"
DENY_ENV = "WASINN_DISABLE_BACKENDS"

REQUIRED_HOOKS = (
    "backend_info",
    "can_handle",
    "load",
    "init_execution_context",
    "set_input",
    "compute",
    "get_output",
)


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


# -- installed distributions, read without importlib.metadata ---------------------------------------
# `import importlib.metadata` alone costs about 20 ms (it pulls in email, zipfile, csv, socket ...):
# more than the rest of `wasinn backends`. In the usual layout (directories on sys.path holding
# *.dist-info and *.egg-info folders, searched by the standard PathFinder) the search is redone here
# with os.listdir and a few small file reads, in importlib.metadata's order and with its
# de-duplication (the first distribution of a name along sys.path wins). Anything else (a zip or
# an .egg on sys.path, a meta-path finder of its own that provides distributions, a file that does
# not parse the simple way) falls back to importlib.metadata itself.

_INFO_SUFFIXES = (".dist-info", ".egg-info")
_HEADER = re.compile(r"[\041-\071\073-\176]*:")  # what email's parser takes for a header line
_NEWLINE = re.compile(r"\r\n|\r|\n")
_ENTRY_POINT_VALUE = re.compile(r"(?P<module>[\w.]+)\s*(:\s*(?P<attr>[\w.]+)\s*)?((?P<extras>\[.*\])\s*)?$")


class _Unsupported(Exception):
    """Not the simple layout: ask importlib.metadata."""


def _normalize(name: str) -> str:
    # importlib.metadata's Prepared.normalize: PEP 503, with underscores.
    return re.sub(r"[-_.]+", "-", name).lower().replace("-", "_")


def _metadata_folders() -> Iterator[tuple[str, str]]:
    """(normalized name, path) of every *.dist-info / *.egg-info on sys.path, in importlib.metadata's
    search order: sys.path order, and within one directory grouped by name in listing order."""
    for finder in sys.meta_path:
        if finder is not importlib.machinery.PathFinder and getattr(finder, "find_distributions", None):
            raise _Unsupported(f"meta path finder {finder!r} provides distributions")
    for root in list(sys.path):
        if not isinstance(root, str):
            raise _Unsupported(f"sys.path entry {root!r}")
        try:
            children = os.listdir(root or ".")
        except OSError:
            if os.path.isfile(root):
                raise _Unsupported(f"{root} may be a zip file") from None
            continue
        if os.path.basename(root).lower().endswith(".egg"):
            raise _Unsupported(f"{root} is an egg")
        groups: dict[str, list[str]] = {}
        for child in children:
            if not child.lower().endswith(_INFO_SUFFIXES):
                continue
            stem, ext = os.path.splitext(child)
            if ext not in _INFO_SUFFIXES:  # importlib.metadata would read its name from its metadata
                raise _Unsupported(f"{os.path.join(root, child)}: unusual name")
            groups.setdefault(_normalize(stem.partition("-")[0]), []).append(os.path.join(root, child))
        for normalized, paths in groups.items():
            for path in paths:
                yield normalized, path


def _read_text(folder: str, filename: str) -> str | None:
    # importlib.metadata's PathDistribution.read_text: a missing file is None; '' is the folder itself.
    try:
        with open(os.path.join(folder, filename) if filename else folder, encoding="utf-8") as file:
            return file.read()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
        return None


def _name_and_version(folder: str) -> tuple[str | None, str | None]:
    """The distribution's ``Name`` and ``Version``, read as ``Distribution.metadata`` reads them."""
    text = _read_text(folder, "METADATA") or _read_text(folder, "PKG-INFO") or _read_text(folder, "") or ""
    found: dict[str, str] = {}
    folded_matters = False  # whether a continuation line would extend a value in `found`
    for line in _NEWLINE.split(text):
        if not line:
            break  # the blank line that ends the headers
        if line[0] in " \t":
            if folded_matters:
                raise _Unsupported(f"{folder}: folded Name or Version header")
            continue
        if line.startswith("From ") or line[0] == ":":
            raise _Unsupported(f"{folder}: a header line email's parser treats specially")
        if not _HEADER.match(line):
            break  # not a header line: the body starts here
        name, _, value = line.partition(":")
        key = name.lower()
        folded_matters = key in ("name", "version") and key not in found
        if folded_matters:
            found[key] = value.lstrip(" \t")
    return found.get("name"), found.get("version")


def _about(folder: str) -> tuple[str | None, str | None]:
    try:
        return _name_and_version(folder)
    except _Unsupported as exc:
        log.debug("reading metadata with importlib.metadata: %s", exc)
    import importlib.metadata
    import pathlib

    dist = importlib.metadata.PathDistribution(pathlib.Path(folder))
    return dist.metadata["Name"], dist.version


def _parse_entry_points(text: str, folder: str) -> Iterator[tuple[str, str, str]]:
    """(group, name, value) for each line of an entry_points.txt, as importlib.metadata reads it."""
    group: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            group = line.strip("[]")
            continue
        if group is None:
            continue
        name, sep, value = line.partition("=")
        if not sep:
            raise _Unsupported(f"{folder}: malformed entry point line {line!r}")
        yield group, name.strip(), value.strip()


@dataclass(frozen=True)
class _EntryPoint:
    """One entry point of group ``wasinn.backends``, and where it comes from."""

    name: str
    value: str
    #: Returns the distribution's (name, version); called only for backends that are wanted.
    distribution: Callable[[], tuple[str | None, str | None]] = field(repr=False, compare=False)

    def load(self) -> object:
        """Import the module the entry point names, and the attribute, if it names one."""
        match = _ENTRY_POINT_VALUE.match(self.value)
        if match is None:
            raise ValueError(f"malformed entry point {self.name} = {self.value!r}")
        target: object = importlib.import_module(match.group("module"))
        for attribute in filter(None, (match.group("attr") or "").split(".")):
            target = getattr(target, attribute)
        return target


def _fast_entry_points(group: str) -> list[_EntryPoint]:
    found = []
    seen: set[str] = set()
    for normalized, folder in _metadata_folders():
        if normalized in seen:
            continue  # shadowed by a distribution of the same name earlier on sys.path
        seen.add(normalized)
        text = _read_text(folder, "entry_points.txt")
        for ep_group, name, value in _parse_entry_points(text or "", folder):
            if ep_group == group:
                found.append(_EntryPoint(name, value, functools.partial(_about, folder)))
    return found


def _slow_entry_points(group: str) -> list[_EntryPoint]:
    import importlib.metadata

    def about(dist: importlib.metadata.Distribution | None) -> tuple[str | None, str | None]:
        return (dist.metadata["Name"], dist.version) if dist is not None else (None, None)

    return [_EntryPoint(ep.name, ep.value, functools.partial(about, getattr(ep, "dist", None)))
            for ep in importlib.metadata.entry_points(group=group)]


def _entry_points(group: str = ENTRY_POINT_GROUP) -> list[_EntryPoint]:
    """The group's entry points (importlib.metadata's answer), sorted by name."""
    try:
        found = _fast_entry_points(group)
    except _Unsupported as exc:
        log.debug("reading entry points with importlib.metadata: %s", exc)
        found = _slow_entry_points(group)
    return sorted(found, key=lambda ep: ep.name)


_T = TypeVar("_T")


def deferred(load: Callable[[], _T]) -> Callable[[], _T]:
    """A function that returns ``load()``, called once, on the first call, whichever thread makes it.

    For a backend package whose hook functions import the implementation only when first called, so
    that discovery (``wasinn backends``) imports nothing but ``backend_info``::

        _backend = deferred(lambda: importlib.import_module("my_backend.backend").MyBackend())

        @hookimpl
        def load(model: ModelDescription, hw: Hardware) -> Graph:
            return _backend().load(model, hw)
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


def distribution_version(name: str) -> str | None:
    """``importlib.metadata.version(name)``, or ``None`` where ``name`` is not installed; without
    importing importlib.metadata in the usual layout. For backends' ``backend_info``."""
    try:
        wanted = _normalize(name)
        for normalized, folder in _metadata_folders():
            if normalized == wanted:
                return _name_and_version(folder)[1]
        return None
    except _Unsupported as exc:
        log.debug("reading the version of %s with importlib.metadata: %s", name, exc)
    import importlib.metadata

    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


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
