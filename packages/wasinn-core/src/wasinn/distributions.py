"""Installed distributions, read without importlib.metadata: entry points and versions.

``import importlib.metadata`` alone costs about 20 ms (it pulls in email, zipfile, csv, socket ...):
more than the rest of ``wasinn backends``. In the usual layout (directories on sys.path holding
*.dist-info and *.egg-info folders, searched by the standard PathFinder) the search is redone here
with os.listdir and a few small file reads, in importlib.metadata's order and with its
de-duplication (the first distribution of a name along sys.path wins). Anything else (a zip or an
.egg on sys.path, a meta-path finder of its own that provides distributions, a file that does not
parse the simple way) falls back to importlib.metadata itself.

:func:`entry_points` is what discovery (:mod:`wasinn.plugins`) reads; :func:`distribution_version`
is for backends' ``backend_info`` (a runtime's version, without importing the runtime).
"""

from __future__ import annotations

import functools
import importlib
import importlib.machinery
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["EntryPoint", "distribution_version", "entry_points"]

log = logging.getLogger("wasinn.plugins")  # discovery's logger, where these lines have always gone

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
class EntryPoint:
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


def _fast_entry_points(group: str) -> list[EntryPoint]:
    found = []
    seen: set[str] = set()
    for normalized, folder in _metadata_folders():
        if normalized in seen:
            continue  # shadowed by a distribution of the same name earlier on sys.path
        seen.add(normalized)
        text = _read_text(folder, "entry_points.txt")
        for ep_group, name, value in _parse_entry_points(text or "", folder):
            if ep_group == group:
                found.append(EntryPoint(name, value, functools.partial(_about, folder)))
    return found


def _slow_entry_points(group: str) -> list[EntryPoint]:
    import importlib.metadata

    def about(dist: importlib.metadata.Distribution | None) -> tuple[str | None, str | None]:
        return (dist.metadata["Name"], dist.version) if dist is not None else (None, None)

    return [EntryPoint(ep.name, ep.value, functools.partial(about, getattr(ep, "dist", None)))
            for ep in importlib.metadata.entry_points(group=group)]


def entry_points(group: str) -> list[EntryPoint]:
    """The group's entry points (importlib.metadata's answer), sorted by name."""
    try:
        found = _fast_entry_points(group)
    except _Unsupported as exc:
        log.debug("reading entry points with importlib.metadata: %s", exc)
        found = _slow_entry_points(group)
    return sorted(found, key=lambda ep: ep.name)


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

