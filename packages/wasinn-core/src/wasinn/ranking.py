"""Choosing a backend for a model: ask every available backend's ``can_handle``, rank the answers.

Ranking order: score (highest first), then the user's preference list, then the backend name, so
the result never depends on the order in which plugins were installed or imported.

A backend that finds the file *malformed* (``Decline(..., malformed=True)``: its verifier refused it)
ends the ranking: nobody wins, and no runner-up without that verifier is handed the file.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from wasinn.enums import ErrorCode, ModelFormat
from wasinn.errors import WasiNnError
from wasinn.hardware import Hardware
from wasinn.hookspecs import Decline, Score
from wasinn.model import ModelDescription
from wasinn.plugins import Backend, BackendRegistry

log = logging.getLogger("wasinn.ranking")


@dataclass(frozen=True, slots=True)
class Candidate:
    """One backend's answer. ``score`` is ``None`` when it declined, failed or is unavailable."""

    backend: str
    score: float | None
    reason: str
    device: str | None = None
    decline_code: ErrorCode | None = None
    malformed: bool = False

    @property
    def eligible(self) -> bool:
        return self.score is not None

    def to_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "score": self.score, "reason": self.reason, "device": self.device,
                "malformed": self.malformed}


@dataclass(frozen=True, slots=True)
class Ranking:
    """Every backend's answer, best first; ``winner`` is ``None`` when nobody can serve the model."""

    model: ModelDescription
    candidates: tuple[Candidate, ...]
    forced: str | None = None

    @property
    def malformed(self) -> Candidate | None:
        """The first backend that refused the file as malformed, if any (then nobody wins)."""
        return next((c for c in self.candidates if c.malformed), None)

    @property
    def winner(self) -> Candidate | None:
        if self.malformed is not None:
            return None
        first = self.candidates[0] if self.candidates else None
        return first if first is not None and first.eligible else None

    @property
    def runners_up(self) -> tuple[Candidate, ...]:
        return tuple(c for c in self.candidates[1:] if c.eligible)

    def to_dict(self) -> dict[str, Any]:
        winner = self.winner
        return {
            "format": self.model.format.value,
            "target": self.model.target.value,
            "forced": self.forced,
            "remote": self.model.remote.endpoint if self.model.remote else None,
            "winner": winner.backend if winner else None,
            "candidates": [c.to_dict() for c in self.candidates],
        }

    def summary(self) -> str:
        """One log line: winner, score, reason, runners-up."""
        winner = self.winner
        refusal = self.malformed
        if refusal is not None:
            return (f"{self.model.describe()} refused: backend {refusal.backend} found it malformed: "
                    f"{refusal.reason}")
        if winner is None:
            reasons = "; ".join(f"{c.backend}: {c.reason}" for c in self.candidates) or "no backends installed"
            return f"no backend can serve {self.model.describe()} ({reasons})"
        others = ", ".join(f"{c.backend} ({c.score:g})" for c in self.runners_up) or "none"
        device = f" on {winner.device}" if winner.device else ""
        forced = " [forced]" if self.forced else ""
        return (
            f"{self.model.describe()} -> {winner.backend}{device}{forced}, score {winner.score:g}: "
            f"{winner.reason}; runners-up: {others}"
        )


def ask(backend: Backend, model: ModelDescription, hw: Hardware) -> Candidate:
    """One backend's ``can_handle`` answer, with every failure turned into a reasoned refusal."""
    if not backend.available:
        return Candidate(backend.name, None, f"unavailable: {backend.unavailable}")
    info = backend.info
    if model.remote is not None and (info is None or ModelFormat.REMOTE not in info.formats):
        # A backend must say it serves remote models: one that lists no formats is not asked either.
        return Candidate(backend.name, None, f"serves local models; {model.remote.name!r} is mapped to "
                                             f"{model.remote.endpoint}", decline_code=ErrorCode.INVALID_ENCODING)
    if info is not None and info.formats and model.format not in info.formats:
        formats = ", ".join(f.value for f in info.formats)
        return Candidate(backend.name, None, f"reads {formats}, not {model.format.value}",
                         decline_code=ErrorCode.INVALID_ENCODING)
    try:
        answer = backend.hooks["can_handle"](model=model, hw=hw)
    except Exception as exc:
        log.warning("backend %s: can_handle raised %s: %s", backend.name, type(exc).__name__, exc)
        return Candidate(backend.name, None, f"can_handle failed: {exc}", decline_code=ErrorCode.RUNTIME_ERROR)
    if answer is None:
        return Candidate(backend.name, None, "declined", decline_code=ErrorCode.INVALID_ENCODING)
    if isinstance(answer, Decline):
        return Candidate(backend.name, None, answer.reason, decline_code=answer.code,
                         malformed=bool(answer.malformed))
    if isinstance(answer, Score):
        return Candidate(backend.name, float(answer.value), answer.reason, answer.device)
    log.warning("backend %s: can_handle returned %r, not a Score", backend.name, answer)
    return Candidate(backend.name, None, f"can_handle returned {type(answer).__name__}, not a Score",
                     decline_code=ErrorCode.RUNTIME_ERROR)


def rank(
    model: ModelDescription,
    hw: Hardware,
    registry: BackendRegistry,
    *,
    forced: str | None = None,
    prefer: Sequence[str] = (),
) -> Ranking:
    """Ask the backends (only ``forced`` if given) and order their answers."""
    if forced is not None:
        backend = registry.get(forced)
        if backend is None:
            candidates: tuple[Candidate, ...] = (Candidate(forced, None, "not installed (or not allowed)",
                                                           decline_code=ErrorCode.INVALID_ENCODING),)
        else:
            candidates = (ask(backend, model, hw),)
        return Ranking(model, candidates, forced)
    preference = {name: i for i, name in enumerate(prefer)}
    answers = [ask(backend, model, hw) for backend in registry]
    answers.sort(key=lambda c: (
        c.score is None,
        -(c.score or 0.0),
        preference.get(c.backend, len(preference)),
        c.backend,
    ))
    return Ranking(model, tuple(answers))


def choose(ranking: Ranking) -> Candidate:
    """The winner, or the :class:`WasiNnError` the guest should get when there is none."""
    winner = ranking.winner
    if winner is not None:
        return winner
    refusal = ranking.malformed
    if refusal is not None:
        raise WasiNnError(refusal.decline_code or ErrorCode.INVALID_ARGUMENT, ranking.summary())
    if ranking.forced is not None and ranking.candidates:
        refusal = ranking.candidates[0]
        raise WasiNnError(refusal.decline_code or ErrorCode.INVALID_ENCODING,
                          f"backend {ranking.forced} cannot serve {ranking.model.describe()}: {refusal.reason}")
    # A target no backend can meet is an unsupported operation; a format nobody reads is an encoding error.
    # A backend that reads the format but declined the target makes it an unsupported operation; one
    # that reads the format and found the model malformed makes it an invalid argument.
    codes = {c.decline_code for c in ranking.candidates}
    if ErrorCode.UNSUPPORTED_OPERATION in codes:
        code = ErrorCode.UNSUPPORTED_OPERATION
    elif ErrorCode.INVALID_ARGUMENT in codes:
        code = ErrorCode.INVALID_ARGUMENT
    else:
        code = ErrorCode.INVALID_ENCODING
    raise WasiNnError(code, ranking.summary())
