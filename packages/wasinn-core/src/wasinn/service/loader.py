"""From model bytes or a registered name to a loaded graph: what every ABI's ``load`` shares.

:class:`GraphLoader` holds the backend registry, the hardware snapshot, the named models and the
host's policy on what a guest may load; it ranks the installed backends for a model and loads it on the
winner. :class:`wasinn.WasiNnHost` is a GraphLoader that also serves the two guest ABIs.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from wasinn import formats, hardware, onnxguard, ranking
from wasinn.enums import ENCODING_ALSO, ENCODING_FORMAT, ErrorCode, ExecutionTarget, GraphEncoding, ModelFormat
from wasinn.errors import ConfigurationError, WasiNnError
from wasinn.hardware import Device, Hardware
from wasinn.hookspecs import Graph
from wasinn.limits import Limits
from wasinn.model import ModelDescription
from wasinn.plugins import Backend, BackendRegistry, discover
from wasinn.service.graphs import LoadedGraph, call_backend, graph_lock
from wasinn.service.named import NamedModel, NamedModels, config_key

log = logging.getLogger("wasinn")


class GraphLoader:
    """Ranks the installed backends for a model and loads it on the best one.

    Parameters: ``backends`` adds backend objects by name (entry points are still discovered
    unless ``entry_points=False``); ``allow``/``deny`` override ``WASINN_BACKENDS`` /
    ``WASINN_DISABLE_BACKENDS``; ``backend`` forces one backend for every load; ``prefer`` maps an
    encoding (or ``"*"``) to backend names that win ties; ``hardware`` replaces the probed
    snapshot; ``limits`` caps what each store may hold.
    """

    def __init__(
        self,
        *,
        backends: Mapping[str, object] | None = None,
        entry_points: bool = True,
        allow: Iterable[str] | None = None,
        deny: Iterable[str] | None = None,
        backend: str | None = None,
        prefer: Mapping[str, Sequence[str]] | None = None,
        hardware: Hardware | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.registry: BackendRegistry = discover(allow=allow, deny=deny, extra=backends,
                                                  use_entry_points=entry_points)
        self.forced_backend = backend
        self.prefer = {key: list(value) for key, value in (prefer or {}).items()}
        self.limits = limits or Limits()
        self.named = NamedModels()
        self._hardware = hardware
        self._hardware_lock = threading.Lock()
        self._closed = False
        self._prestarted = False
        #: Optional ``description -> context manager`` wrapped around each backend load (the CLI
        #: shows a progress spinner with it when attached to a terminal).
        self.load_progress: Callable[[str], AbstractContextManager[Any]] | None = None
        if backend is not None and self.registry.get(backend) is None:
            raise ConfigurationError(f"--backend {backend}: no such backend is installed "
                                     f"(installed: {', '.join(self.registry.names) or 'none'})")

    def prestart_workers(self) -> None:
        """Start the worker templates guests' models will need, in the background (once per host;
        see ``Limits.worker_prestart``). Called when a store is made."""
        if self._prestarted:
            return
        self._prestarted = True
        from wasinn.worker import prestart  # it decides whether to (policy and Limits.worker_prestart)
        forced = self.registry.get(self.forced_backend) if self.forced_backend else None
        prestart(self.limits, [forced] if forced is not None else self.registry.available())

    # -- backends and hardware -----------------------------------------------------------------
    @property
    def backends(self) -> list[Backend]:
        """Every discovered backend, available or not."""
        return list(self.registry)

    @property
    def hardware(self) -> Hardware:
        """The hardware snapshot backends score against (probed once, with backends' devices)."""
        if self._hardware is None:
            with self._hardware_lock:
                if self._hardware is None:
                    snapshot = hardware.probe()
                    if not os.environ.get(hardware.HARDWARE_ENV):
                        snapshot = snapshot.with_devices(self.backend_devices())
                    self._hardware = snapshot
        return self._hardware

    def hardware_for(self, target: ExecutionTarget) -> Hardware:
        """The snapshot to score a model for ``target`` against.

        A CPU model needs no accelerator list, so it is scored against the probe alone: asking
        every backend for its devices imports every runtime (about half a second with OpenVINO).
        """
        if target is ExecutionTarget.CPU and self._hardware is None:
            return hardware.probe()
        return self.hardware

    def backend_devices(self) -> list[Device]:
        """Ask each available backend's ``devices`` hook (imports their runtimes)."""
        found: list[Device] = []
        for backend in self.registry.available():
            hook = backend.hook("devices")
            if hook is None:
                continue
            try:
                found.extend(hook())
            except Exception as exc:
                log.warning("backend %s: devices failed: %s", backend.name, exc)
        return found

    # -- models ----------------------------------------------------------------------------------
    def register_model(
        self,
        name: str,
        source: str | Path | bytes | Sequence[str | Path | bytes],
        *,
        encoding: GraphEncoding | str | None = None,
        target: ExecutionTarget | str = ExecutionTarget.CPU,
        config: Mapping[str, Any] | None = None,
        backend: str | None = None,
    ) -> NamedModel:
        """Make a model available to guests as ``load_by_name(name)``.

        ``source`` is a path, bytes, or a list of them (OpenVINO IR: XML then weights). It is read
        and compiled on first use and shared by every store of this host.
        """
        return self.named.register(name, source, encoding=encoding, target=target, config=config,
                                   backend=backend)

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
        """Make a model on an inference server available to guests as ``load_by_name(name)``.

        ``uri`` names the server and the model (``http://127.0.0.1:8000/v2/models/affine``,
        ``grpc://127.0.0.1:8001/affine``); ``options`` (timeout, retries, transport, token, TLS
        files ...) are checked by the backend that serves remote models (wasinn-backend-kserve).
        Credentials belong here, in the host's configuration, never in a guest's config; they are
        never logged. The guest does not change: only this registration does.
        """
        return self.named.register_remote(name, uri, options=options, target=target, config=config,
                                          backend=backend)

    def describe_named(self, name: str, config: Mapping[str, Any] | None = None) -> ModelDescription:
        """The :class:`ModelDescription` backends are asked about for a registered name."""
        named = self.named.get(name)
        if named is None:
            raise WasiNnError(ErrorCode.NOT_FOUND, f"no model named {name!r} is registered")
        merged = {**named.config, **(config or {})}
        if named.remote is not None:
            # No bytes to sniff: the server holds the model. Only a backend that lists
            # ModelFormat.REMOTE is asked about it (see ranking.ask).
            return ModelDescription(format=ModelFormat.REMOTE, builders=(), target=named.target, name=name,
                                    config=merged, guest_config=dict(config or {}), remote=named.remote,
                                    limits=self.limits)
        try:
            builders = named.read_builders()
        except OSError as exc:
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"named model {name!r}: cannot read: {exc}") from exc
        return self.describe_model(builders, encoding=named.encoding, target=named.target, name=name,
                                   paths=named.paths, config=merged, guest_config=config)

    def explain_named(self, name: str) -> ranking.Ranking:
        """Every backend's score for a registered name (for a remote one: which server, and why)."""
        named = self.named.get(name)
        return self.rank(self.describe_named(name), backend=named.backend if named else None)

    def describe_model(
        self,
        builders: Sequence[bytes | bytearray | memoryview],
        *,
        encoding: GraphEncoding | None = None,
        target: ExecutionTarget = ExecutionTarget.CPU,
        name: str | None = None,
        paths: Sequence[Path] | None = None,
        config: Mapping[str, Any] | None = None,
        guest_config: Mapping[str, Any] | None = None,
    ) -> ModelDescription:
        """Detect the format and build the :class:`ModelDescription` backends are asked about.

        An explicit encoding that contradicts the bytes is ``invalid_encoding``; bytes that are
        recognisable as no format at all are ``invalid_argument``.
        """
        if not builders:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "load needs at least one graph builder")
        detected = self.detect_format(builders)
        if encoding is None or encoding is GraphEncoding.AUTODETECT:
            if detected == ModelFormat.UNKNOWN:
                raise WasiNnError(ErrorCode.INVALID_ENCODING, f"cannot recognise the model format of "
                                                              f"{len(builders)} builder(s) to autodetect")
            fmt = detected
            encoding = None
        else:
            fmt = ENCODING_FORMAT[encoding]
            if detected in ENCODING_ALSO.get(encoding, ()):
                fmt = detected
            if detected != ModelFormat.UNKNOWN and detected != fmt:
                raise WasiNnError(ErrorCode.INVALID_ENCODING, f"encoding {encoding.value} was given but the "
                                                              f"bytes are a {detected.value} model")
            if detected == ModelFormat.UNKNOWN and fmt != ModelFormat.TENSORFLOW:
                raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"the bytes are not a valid {fmt.value} model "
                                                              f"({len(builders)} builder(s))")
        return ModelDescription(
            format=fmt,
            builders=tuple(bytes(b) for b in builders),
            target=target,
            encoding=encoding,
            name=name,
            paths=tuple(paths) if paths else None,
            config=dict(config or {}),
            guest_config=dict(guest_config or {}),
            limits=self.limits,
        )

    def detect_format(self, builders: Sequence[bytes | bytearray | memoryview]) -> ModelFormat:
        """The built-in detectors first, then each backend's optional ``detect_format`` hook."""
        detected = formats.detect_format(builders)
        if detected != ModelFormat.UNKNOWN:
            return detected
        for backend in self.registry.available():
            hook = backend.hook("detect_format")
            if hook is None:
                continue
            try:
                answer = hook(builders=tuple(builders))
            except Exception as exc:
                log.warning("backend %s: detect_format failed: %s", backend.name, exc)
                continue
            if answer:
                return ModelFormat(answer)
        return ModelFormat.UNKNOWN

    def rank(self, model: ModelDescription, *, backend: str | None = None) -> ranking.Ranking:
        """Every backend's score for ``model``, best first (what ``wasinn explain`` shows)."""
        forced = backend or self.forced_backend
        prefer = self.prefer.get(model.encoding.value if model.encoding else model.format.value) \
            or self.prefer.get(model.format.value) or self.prefer.get("*", [])
        return ranking.rank(model, self.hardware_for(model.target), self.registry, forced=forced, prefer=prefer)

    def load_description(self, model: ModelDescription, *, backend: str | None = None,
                         shared: bool = False) -> LoadedGraph:
        """Rank, choose and load: the heart of ``load``."""
        result = self.rank(model, backend=backend)
        winner = ranking.choose(result)
        log.info("%s", result.summary())
        chosen = self.registry.get(winner.backend)
        assert chosen is not None
        if model.from_guest:  # a guest's bytes: in a confined worker, by the policy (wasinn.worker)
            from wasinn.worker import select_backend
            chosen = select_backend(self.limits, model, chosen)
        started = time.perf_counter()
        progress = self.load_progress(f"loading {model.describe()} on {chosen.name}") if self.load_progress \
            else nullcontext()
        with progress:
            graph = call_backend(chosen, "load", chosen.hooks["load"], model, self.hardware_for(model.target))
        if not isinstance(graph, Graph):
            raise WasiNnError(ErrorCode.RUNTIME_ERROR, f"backend {chosen.name}: load returned "
                                                       f"{type(graph).__name__}, not Graph")
        log.debug("backend %s loaded %s in %.1f ms (device %s)", chosen.name, model.describe(),
                  (time.perf_counter() - started) * 1000, graph.device)
        concurrent = chosen.info.concurrent_contexts if chosen.info else True
        return LoadedGraph(backend=chosen, graph=graph, description=model.describe(), model_bytes=model.size,
                           shared=shared, lock=graph_lock(concurrent))

    def load_model(self, builders: Sequence[bytes | bytearray | memoryview], *, encoding: GraphEncoding,
                   target: ExecutionTarget) -> LoadedGraph:
        """A guest's model bytes (``load``), checked against the host's policy, then loaded."""
        model = self.describe_model(builders, encoding=encoding, target=target)
        self.check_guest_code(model)
        if model.format == ModelFormat.ONNX and formats.onnx_external_data(model.builders[0]):
            # Only an embedder's model (register_model, from its own files) may use external data.
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "the ONNX model keeps tensor data in other files (external "
                                                          "data), or its tensors cannot be parsed to check: a "
                                                          "guest's model must be self-contained")
        if model.format == ModelFormat.ONNX and model.from_guest:
            # Sparse tensors, nodes and strings cost a runtime memory no cap reaches, at load.
            onnxguard.check_guest_onnx(model.builders[0], self.limits)
        return self.load_description(model)

    def code_formats(self) -> frozenset[ModelFormat]:
        """Formats whose files carry code: wasinn's own list and what installed backends declare."""
        declared = {fmt for backend in self.registry.available() if backend.info
                    for fmt in backend.info.code_formats}
        return formats.CODE_FORMATS | declared

    def check_guest_code(self, model: ModelDescription) -> None:
        """Refuse a guest's model whose format carries code, unless the embedder allowed it.

        Decided from the detected format before any backend (or its runtime) sees a byte: a guest's
        TorchScript archive or ``.pt2`` is a program, and a runtime that loads it runs it.
        """
        if not model.from_guest or self.limits.allow_guest_code or model.format not in self.code_formats():
            return
        log.warning("refused a guest's %s: its runtime would run code from the file; only the embedder's named "
                    "models may be %s (to accept a guest's, set Limits(allow_guest_code=True) or pass "
                    "--allow-guest-code)", model.describe(), model.format.value)
        raise WasiNnError(ErrorCode.INVALID_ARGUMENT, f"a guest's {model.format.value} model carries code; this host "
                                                      f"accepts such models only from the embedder")

    def load_named(self, name: str, config: Mapping[str, Any] | None = None, *,
                   share_variants: bool = True) -> LoadedGraph:
        """The shared graph of a named model (loaded on first use, then cached).

        With ``share_variants=False`` (a guest's config), a config that changes the embedder's gives
        a new graph for the caller to own, never cached: otherwise a guest could make the host hold
        one graph per config it can think of.
        """
        named = self.named.get(name)
        if named is None:
            raise WasiNnError(ErrorCode.NOT_FOUND, f"no model named {name!r} is registered")
        merged = {**named.config, **(config or {})}
        key = (name, config_key(merged))
        shared = share_variants or key[1] == config_key(named.config)
        cached = self.named.loaded.get(key) if shared else None
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        with self.named.lock:
            cached = self.named.loaded.get(key) if shared else None
            if cached is not None:
                return cached  # type: ignore[no-any-return]
            if self._closed:
                raise WasiNnError(ErrorCode.RUNTIME_ERROR, "the host is closed")
            model = self.describe_named(name, config)
            loaded = self.load_description(model, backend=named.backend, shared=shared)
            if shared:
                self.named.loaded[key] = loaded
            return loaded

    def load_preloaded(self, raw_path: bytes) -> LoadedGraph:
        """The shared graph of the named model registered from the file ``raw_path`` (WasmEdge's
        ``preload:<path>`` builder). Only files the embedder registered are reachable."""
        try:
            text = raw_path.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            raise WasiNnError(ErrorCode.INVALID_ARGUMENT, "preload: path is not valid UTF-8") from None
        # Compared as text with what the embedder registered: a guest's text is never expanded
        # (``~user`` is an NSS lookup), resolved (readlink of guest-chosen paths) or stat'ed.
        for name in list(self.named.names()):
            named = self.named.get(name)
            if named is not None and named.answers_to(text):
                return self.load_named(name)
        raise WasiNnError(ErrorCode.NOT_FOUND, f"preload:{text!r}: no model was preloaded from that file "
                                               f"(register it with --nn-preload or register_model)")

    def close(self) -> None:
        """Release every shared named-model graph. Stores release their own graphs."""
        with self.named.lock:
            self._closed = True
            for loaded in [*self.named.loaded.values(), *self.named.retired]:
                loaded.release()
            self.named.loaded.clear()
            self.named.retired.clear()

    # -- diagnostics -----------------------------------------------------------------------------
    def explain(self, builders: Sequence[bytes], *, target: ExecutionTarget = ExecutionTarget.CPU,
                encoding: GraphEncoding | None = None, paths: Sequence[Path] | None = None,
                config: Mapping[str, Any] | None = None) -> ranking.Ranking:
        model = self.describe_model(builders, encoding=encoding, target=target, paths=paths, config=config)
        return self.rank(model)

    def backends_report(self) -> list[dict[str, Any]]:
        return [b.to_dict() for b in self.registry]

    def hardware_json(self) -> str:
        return json.dumps(self.hardware.to_dict(), indent=2)
