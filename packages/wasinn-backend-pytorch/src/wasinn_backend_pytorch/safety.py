"""Checks that run on a guest's archive before torch sees it, and on the program torch loaded.

A guest hands us arbitrary bytes, so the archive is hostile until proven otherwise:

* **No Python pickle is ever unpickled.** TorchScript's ``data.pkl``/``constants.pkl`` are read by
  TorchScript's own (C++) unpickler, which builds only tensors and TorchScript types and runs no
  Python. ``torch.export.load`` is different: it unpickles weights and constants marked
  ``use_pickle``, opaque objects with :func:`pickle.loads`, and falls back to
  ``torch.load(weights_only=False)`` for the sample inputs. So a ``.pt2`` is accepted only when
  every weight and constant is a raw tensor payload; it is then handed to torch **rebuilt**, with the
  sample inputs (which inference does not need) emptied and nothing but the listed entries kept.
* **No operator that reaches outside the sandbox.** A model's code may call ``aten::from_file``
  (read any host file into a tensor), ``aten::save`` (write one), ``debugprims::load_tensor``, or
  print to the host's stdout. TorchScript code ships as source in the archive, including the
  ``__setstate__`` methods torch runs while loading, so it is scanned before loading; the loaded
  graphs are walked again afterwards (for both formats).
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterable
from typing import Any

#: Operators a guest's model may not use: they read or write host files or the host's stdout.
FORBIDDEN_OPS = frozenset({"aten::from_file", "aten::save", "debugprims::load_tensor", "prim::Print", "aten::_print"})
# How those operators appear in TorchScript's serialized source (torch.from_file(...), print(...)).
_FORBIDDEN_SOURCE = re.compile(r"\b(from_file|save|load_tensor|_print|print)\s*\(")
#: More entries than this is no model (bounds the work done on a hostile zip).
MAX_ENTRIES = 100_000


class UnsafeModel(ValueError):
    """The archive is refused: it could run code or reach host files. The message says why."""


def _archive(data: bytes) -> zipfile.ZipFile:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UnsafeModel(f"not a readable zip archive: {exc}") from None
    if len(archive.infolist()) > MAX_ENTRIES:
        raise UnsafeModel(f"more than {MAX_ENTRIES} entries")
    return archive


def _read(archive: zipfile.ZipFile, name: str) -> bytes:
    try:
        return archive.read(name)
    except Exception as exc:  # bad CRC, unsupported compression, truncated member
        raise UnsafeModel(f"entry {name!r} cannot be read: {exc}") from None


def check_torchscript(data: bytes) -> None:
    """Refuse a TorchScript archive whose code calls a forbidden operator (before loading it)."""
    with _archive(data) as archive:
        for info in archive.infolist():
            if "/code/" not in info.filename or not info.filename.endswith(".py"):
                continue
            source = _read(archive, info.filename).decode("utf-8", errors="replace")
            found = _FORBIDDEN_SOURCE.search(source)
            if found:
                raise UnsafeModel(f"its code ({info.filename}) calls {found.group(1)}(), which reaches host files "
                                  f"or the host's stdout")


def _payload_configs(archive: zipfile.ZipFile, names: Iterable[str], kind: str) -> list[tuple[str, dict[str, Any]]]:
    configs: list[tuple[str, dict[str, Any]]] = []
    for name in names:
        if re.fullmatch(rf"[^/]+/data/{kind}/model_{kind}_config\.json|[^/]+/data/{kind}/\w+_{kind}_config\.json",
                        name):
            try:
                config = json.loads(_read(archive, name))
                entries = config["config"]
                if not isinstance(entries, dict):
                    raise TypeError("config is not an object")
            except (ValueError, KeyError, TypeError) as exc:
                raise UnsafeModel(f"{name} is not a payload config: {exc}") from None
            configs.extend((str(fqn), meta) for fqn, meta in entries.items())
    return configs


def safe_torch_export(data: bytes) -> bytes:
    """A copy of a ``.pt2`` archive that ``torch.export.load`` can read without unpickling anything.

    Raises :class:`UnsafeModel` for an archive with pickled payloads, opaque or custom objects,
    the legacy pickled layout, or entries outside the archive's one root folder.
    """
    with _archive(data) as archive:
        names = [info.filename for info in archive.infolist()]
        roots = {name.split("/", 1)[0] for name in names}
        if len(roots) != 1 or any("/" not in name or ".." in name.split("/") for name in names):
            raise UnsafeModel("entries outside one root folder")
        for name in names:
            if name.endswith(".pt") and "/sample_inputs/" not in name:
                raise UnsafeModel(f"{name} is a pickled payload (legacy layout), which could run code")
            if "/data/constants/" in name and name.rsplit("/", 1)[-1].startswith(("custom_obj", "opaque_obj")):
                raise UnsafeModel(f"{name} is a pickled object, which could run code")
        for kind in ("weights", "constants"):
            for fqn, meta in _payload_configs(archive, names, kind):
                if not isinstance(meta, dict) or meta.get("use_pickle") is not False:
                    raise UnsafeModel(f"{kind[:-1]} {fqn!r} is pickled, which could run code")
                path = str(meta.get("path_name", ""))
                if kind == "constants" and not path.startswith("tensor"):
                    raise UnsafeModel(f"constant {fqn!r} ({path}) is not a tensor")
        rebuilt = io.BytesIO()
        with zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_STORED) as out:
            for name in names:
                # Inference needs no sample inputs, and torch unpickles them with a fallback that
                # runs code: an empty entry reads as "none".
                out.writestr(name, b"" if "/sample_inputs/" in name else _read(archive, name))
        return rebuilt.getvalue()


def forbidden_in(kinds: Iterable[str]) -> str | None:
    """The first forbidden operator among node kinds or targets (``aten::from_file``, ...), if any."""
    for kind in kinds:
        name = kind.replace(".", "::", 1) if "::" not in kind else kind
        base = name.split(".", 1)[0]  # aten::from_file.default -> aten::from_file
        if base in FORBIDDEN_OPS:
            return base
    return None
