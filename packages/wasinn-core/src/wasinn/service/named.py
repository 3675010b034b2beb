"""Named models: registered by the embedder, loaded once, shared by every store of a host.

A guest reaches them only through ``load_by_name`` with a registered name. Names are plain keys:
``../etc/passwd`` is just a name that was not registered, and no guest string is ever used as a path.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasinn.enums import ExecutionTarget, GraphEncoding
from wasinn.errors import ConfigurationError
from wasinn.remote import RemoteModel, make_remote

log = logging.getLogger("wasinn.named")


@dataclass(frozen=True, slots=True)
class NamedModel:
    """A model the embedder registered under ``name``: from files (``paths``), bytes (``data``) or an
    inference server (``remote``)."""

    name: str
    paths: tuple[Path, ...] | None = None
    data: tuple[bytes, ...] | None = None
    encoding: GraphEncoding | None = None
    target: ExecutionTarget = ExecutionTarget.CPU
    config: Mapping[str, Any] = field(default_factory=dict)
    backend: str | None = None
    remote: RemoteModel | None = None
    #: The paths as the embedder spelled them (``model.gguf``, ``~/m.gguf``), besides the resolved
    #: ``paths``: what a WasmEdge guest's ``preload:<path>`` builder is compared with, as text.
    spellings: tuple[str, ...] = ()

    def answers_to(self, text: str) -> bool:
        """Whether a guest's ``preload:<text>`` names this model's file. A plain string comparison:
        the guest's text is never expanded, resolved or looked up on the file system."""
        return bool(text) and self.paths is not None and (
            text in self.spellings or any(text == str(path) for path in self.paths))

    def read_builders(self) -> tuple[bytes, ...]:
        if self.data is not None:
            return self.data
        assert self.paths is not None
        return tuple(path.read_bytes() for path in self.paths)


def config_key(config: Mapping[str, Any] | None) -> str:
    """A canonical text of a config, to key the shared-graph cache."""
    return json.dumps(config or {}, sort_keys=True, separators=(",", ":"))


class NamedModels:
    """The host's table of named models and their shared, loaded graphs."""

    def __init__(self) -> None:
        self._models: dict[str, NamedModel] = {}
        self.lock = threading.RLock()
        #: (name, config key) -> loaded graph record (owned by the host, shared by stores)
        self.loaded: dict[tuple[str, str], Any] = {}
        #: graphs of models registered again under the same name, released when the host closes
        self.retired: list[Any] = []

    def register(
        self,
        name: str,
        source: str | Path | bytes | Sequence[str | Path | bytes],
        *,
        encoding: GraphEncoding | str | None = None,
        target: ExecutionTarget | str = ExecutionTarget.CPU,
        config: Mapping[str, Any] | None = None,
        backend: str | None = None,
    ) -> NamedModel:
        if not name:
            raise ConfigurationError("a named model needs a non-empty name")
        items: list[str | Path | bytes]
        items = [source] if isinstance(source, str | Path | bytes) else list(source)
        if not items:
            raise ConfigurationError(f"named model {name!r}: no files or bytes given")
        if all(isinstance(item, bytes) for item in items):
            paths, data = None, tuple(bytes(item) for item in items)  # type: ignore[arg-type]
            spellings: tuple[str, ...] = ()
        elif any(isinstance(item, bytes) for item in items):
            raise ConfigurationError(f"named model {name!r}: mix of paths and bytes")
        else:
            spellings = tuple(str(item) for item in items)
            paths = tuple(Path(item).expanduser().resolve() for item in items)  # type: ignore[arg-type]
            for path in paths:
                if not path.is_file():
                    raise ConfigurationError(f"named model {name!r}: {path} is not a file")
            data = None
        model = NamedModel(
            name=name,
            paths=paths,
            data=data,
            encoding=GraphEncoding(encoding) if isinstance(encoding, str) else encoding,
            target=ExecutionTarget(target) if isinstance(target, str) else target,
            config=dict(config or {}),
            backend=backend,
            spellings=spellings,
        )
        return self._add(model)

    def register_remote(
        self,
        name: str,
        uri: str,
        *,
        options: Mapping[str, object] | None = None,
        target: ExecutionTarget | str = ExecutionTarget.CPU,
        config: Mapping[str, Any] | None = None,
        backend: str | None = None,
    ) -> NamedModel:
        remote = make_remote(name, uri, options)
        model = NamedModel(
            name=name,
            target=ExecutionTarget(target) if isinstance(target, str) else target,
            config=dict(config or {}),
            backend=backend,
            remote=remote,
        )
        log.debug("named model %s -> %s", name, remote.endpoint)
        return self._add(model)

    def _add(self, model: NamedModel) -> NamedModel:
        name = model.name
        with self.lock:
            if name in self._models:
                # New loads get the new model; graphs already handed to stores stay valid until the
                # host closes (a store may still be using them).
                stale = [key for key in self.loaded if key[0] == name]
                self.retired.extend(self.loaded.pop(key) for key in stale)
                log.info("named model %s re-registered; %d loaded graph(s) retired", name, len(stale))
            self._models[name] = model
        return model

    def get(self, name: str) -> NamedModel | None:
        return self._models.get(name)

    def names(self) -> Iterable[str]:
        return self._models.keys()
