"""What a backend is told about a model before and while it loads it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wasinn.enums import ExecutionTarget, GraphEncoding, ModelFormat
from wasinn.limits import Limits
from wasinn.remote import RemoteModel


@dataclass(frozen=True, slots=True)
class ModelDescription:
    """A model to score (``can_handle``) or load (``load``).

    * ``format`` was detected from the bytes by the core (never taken from the guest on trust).
    * ``builders`` are the graph builders as owned ``bytes`` (for OpenVINO IR: XML, then weights).
    * ``paths`` are set for named models that came from files; backends that prefer reading a file
      (OpenVINO reads TFLite only from a path) may use them. They are host paths chosen by the
      embedder, never by a guest.
    * ``encoding`` is the encoding the guest asked for, or ``None`` for ``autodetect`` and
      ``load_by_name``.
    * ``config`` is the named model's config (the embedder's) with the JSON object of
      ``load_by_name_with_config`` (the guest's) merged over it.
    * ``guest_config`` is the part of ``config`` the guest supplied. It is untrusted: never take a
      host path, a device file or a library to load from it (raise ``INVALID_ARGUMENT`` instead).
    * ``remote`` is set (and ``format`` is ``ModelFormat.REMOTE``, ``builders`` empty) for a name
      the host mapped to an inference server (:mod:`wasinn.remote`); only a backend that lists
      ``ModelFormat.REMOTE`` is asked about it.
    * ``limits`` are the host's :class:`~wasinn.limits.Limits`: cap what the runtime may allocate for
      this model with them (an LLM's context length: ``max_context_tokens``).
    * :attr:`from_guest` says whether the bytes came from a guest's ``load`` (hostile until proven
      otherwise) rather than from the embedder.
    """

    format: ModelFormat
    builders: tuple[bytes, ...]
    target: ExecutionTarget = ExecutionTarget.CPU
    encoding: GraphEncoding | None = None
    name: str | None = None
    paths: tuple[Path, ...] | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    guest_config: Mapping[str, Any] = field(default_factory=dict)
    remote: RemoteModel | None = None
    limits: Limits = field(default_factory=Limits)

    @property
    def from_guest(self) -> bool:
        """True for bytes a guest handed to ``load``: treat them as hostile (named models, which the
        embedder registered, are trusted like its code)."""
        return self.name is None and self.remote is None

    @property
    def size(self) -> int:
        """Total bytes over all builders."""
        return sum(len(b) for b in self.builders)

    def describe(self) -> str:
        """A short human description for logs: ``onnx model 'digits' (3.2 kB) for cpu``."""
        label = f" {self.name!r}" if self.name else ""
        if self.remote is not None:
            return f"remote model{label} at {self.remote.endpoint} for {self.target.value}"
        return f"{self.format.value} model{label} ({_human(self.size)}) for {self.target.value}"


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{size} B"
