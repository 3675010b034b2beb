"""An endpoint's settings, from the URI and options the host's configuration gave (never a guest).

URIs::

    http://HOST:PORT[/PREFIX]/v2/models/MODEL[/versions/V]     REST (https:// with TLS)
    grpc://HOST:PORT/MODEL[/versions/V]                        gRPC (grpcs:// with TLS)

Options (``--nn-remote-option NAME:KEY=VALUE`` or ``register_remote(..., options={...})``):
``transport`` (auto, binary, json, grpc), ``timeout`` (seconds per request, default 30),
``connect-timeout`` (default 5), ``retries`` (idempotent calls, default 2), ``version``,
``token`` / ``token-env`` / ``token-file`` (a bearer token, or where to read it), ``tls-ca``,
``tls-cert``, ``tls-key`` (PEM files; mTLS with the last two), ``max-response-bytes`` (default
1 GiB), ``json-max-bytes`` (the largest tensor that may travel as JSON, default 1 MiB),
``pool-size`` (kept-alive REST connections, default 8), ``grpc-port`` (the same server's gRPC port,
for an ``http(s)://`` URI: ``transport=auto`` then infers over gRPC when grpcio is installed, the
fastest way for every tensor size we measured; readiness and metadata stay on REST).
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

from wasinn.errors import ConfigurationError
from wasinn.remote import RemoteModel

TRANSPORTS = ("auto", "binary", "json", "grpc")
KNOWN = frozenset({"transport", "timeout", "connect-timeout", "retries", "version", "token", "token-env",
                   "token-file", "tls-ca", "tls-cert", "tls-key", "max-response-bytes", "json-max-bytes",
                   "pool-size", "grpc-port"})
DEFAULT_PORTS = {"http": 80, "https": 443}
_TOKEN_CHARS = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    name: str  # the wasinn name (for messages)
    scheme: str  # http, https, grpc, grpcs
    host: str
    port: int
    prefix: str  # REST path before /v2 ("" usually)
    model: str
    version: str
    transport: str
    timeout: float
    connect_timeout: float
    retries: int
    max_response_bytes: int
    json_max_bytes: int
    pool_size: int
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    token: str | None = field(default=None, repr=False)
    shown: str = ""  # the URI without credentials
    grpc_port: int | None = None  # an http(s) endpoint's gRPC port, for inference

    @property
    def grpc(self) -> bool:
        return self.scheme in ("grpc", "grpcs")

    def grpc_side(self) -> EndpointConfig | None:
        """The gRPC endpoint inference goes to, for an http(s) URI with ``grpc-port`` (else None)."""
        if self.grpc or self.grpc_port is None or self.transport not in ("auto", "grpc"):
            return None
        if self.transport == "auto" and importlib.util.find_spec("grpc") is None:
            return None  # auto: REST without grpcio; transport=grpc then fails in can_handle
        return replace(self, scheme="grpcs" if self.tls else "grpc", port=self.grpc_port, prefix="",
                       transport="grpc", grpc_port=None, shown=f"{self.shown} (gRPC port {self.grpc_port})")

    @property
    def tls(self) -> bool:
        return self.scheme in ("https", "grpcs")

    @property
    def key(self) -> tuple[object, ...]:
        """Endpoints with equal keys share connections."""
        return (self.scheme, self.host, self.port, self.prefix, self.tls_ca, self.tls_cert, self.tls_key,
                self.token, self.timeout, self.connect_timeout, self.max_response_bytes, self.pool_size)


def _number(remote: RemoteModel, key: str, default: float, *, integer: bool = False, low: float = 0) -> float:
    text = remote.options.get(key)
    if text is None or text == "":
        return default
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise ConfigurationError(f"remote {remote.name}: option {key}={text!r} is not a number") from None
    if value < low or value != value:
        raise ConfigurationError(f"remote {remote.name}: option {key} must be >= {low}")
    return value


def _token(remote: RemoteModel) -> str | None:
    given = [k for k in ("token", "token-env", "token-file") if remote.options.get(k)]
    if len(given) > 1:
        raise ConfigurationError(f"remote {remote.name}: give one of token, token-env, token-file")
    if not given:
        return None
    key = given[0]
    value = remote.options[key]
    if key == "token":
        token = value
    elif key == "token-env":
        token = os.environ.get(value, "")
        if not token:
            raise ConfigurationError(f"remote {remote.name}: token-env: ${value} is not set")
    else:
        try:
            token = Path(value).expanduser().read_text().strip()
        except OSError as exc:
            raise ConfigurationError(f"remote {remote.name}: token-file: cannot read it ({exc.strerror})") from None
    # It goes into an HTTP header / gRPC metadata as it is: a CR or LF would start a header of its own.
    if not _TOKEN_CHARS.fullmatch(token):
        raise ConfigurationError(f"remote {remote.name}: {key}: the token must be printable ASCII without "
                                 "spaces (it is sent as 'Authorization: Bearer TOKEN'; not shown here)")
    return token


def _tls_file(remote: RemoteModel, key: str) -> str | None:
    value = remote.options.get(key)
    if not value:
        return None
    path = Path(value).expanduser()
    if not path.is_file():
        # Not the path itself: tls-key's location counts as a secret (see wasinn.remote).
        raise ConfigurationError(f"remote {remote.name}: option {key}: not a readable file")
    return str(path)


def parse_config(remote: RemoteModel) -> EndpointConfig:
    """Check the URI and options; :class:`ConfigurationError` with a reason (no secrets) if wrong."""
    unknown = sorted(set(remote.options) - KNOWN)
    if unknown:
        raise ConfigurationError(f"remote {remote.name}: unknown option(s) {', '.join(unknown)} "
                                 f"(known: {', '.join(sorted(KNOWN))})")
    parts = urlsplit(remote.uri)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https", "grpc", "grpcs"):
        raise ConfigurationError(f"remote {remote.name}: {remote.endpoint}: use http://, https://, grpc:// or "
                                 "grpcs://")
    host = parts.hostname or ""
    port = parts.port or DEFAULT_PORTS.get(scheme)
    if port is None:
        raise ConfigurationError(f"remote {remote.name}: {remote.endpoint}: a gRPC URI needs a port")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    prefix = ""
    if "v2" in segments and segments[segments.index("v2") + 1:segments.index("v2") + 2] == ["models"]:
        at = segments.index("v2")
        # Quoted again: sent as it is in the request line, a decoded %0D%0A would start a header.
        prefix = "/" + "/".join(quote(s, safe="") for s in segments[:at]) if at else ""
        segments = segments[at + 2:]
    elif not scheme.startswith("grpc"):
        raise ConfigurationError(f"remote {remote.name}: {remote.endpoint}: expected a path "
                                 "[/PREFIX]/v2/models/MODEL[/versions/V]")
    if scheme.startswith("grpc") and prefix:
        raise ConfigurationError(f"remote {remote.name}: {remote.endpoint}: gRPC has no path prefix")
    version = remote.options.get("version", "")
    if len(segments) == 3 and segments[1] == "versions":
        version = segments[2]
        segments = segments[:1]
    if len(segments) != 1 or not segments[0]:
        raise ConfigurationError(f"remote {remote.name}: {remote.endpoint}: cannot tell the model name "
                                 "(…/v2/models/MODEL or grpc://HOST:PORT/MODEL)")
    transport = remote.options.get("transport", "auto").lower() or "auto"
    if transport not in TRANSPORTS:
        raise ConfigurationError(f"remote {remote.name}: transport={transport}: choose from {', '.join(TRANSPORTS)}")
    if scheme.startswith("grpc") and transport not in ("auto", "grpc"):
        raise ConfigurationError(f"remote {remote.name}: transport={transport} needs an http(s):// URI")
    grpc_port = remote.options.get("grpc-port") or None
    if grpc_port is not None and (scheme.startswith("grpc") or not grpc_port.isdigit()
                                  or not 0 < int(grpc_port) < 65536):
        raise ConfigurationError(f"remote {remote.name}: grpc-port={grpc_port!r}: a port number, for an "
                                 "http(s):// URI")
    if not scheme.startswith("grpc") and transport == "grpc" and grpc_port is None:
        raise ConfigurationError(f"remote {remote.name}: transport=grpc needs a grpc:// URI or grpc-port")
    tls = {key: _tls_file(remote, key) for key in ("tls-ca", "tls-cert", "tls-key")}
    if (tls["tls-cert"] is None) != (tls["tls-key"] is None):
        raise ConfigurationError(f"remote {remote.name}: mTLS needs both tls-cert and tls-key")
    if any(tls.values()) and scheme not in ("https", "grpcs"):
        raise ConfigurationError(f"remote {remote.name}: TLS options need an https:// or grpcs:// URI")
    timeout = _number(remote, "timeout", 30.0, low=0.001)
    return EndpointConfig(
        name=remote.name, scheme=scheme, host=host, port=int(port), prefix=prefix, model=segments[0],
        version=version, transport="grpc" if scheme.startswith("grpc") else transport, timeout=timeout,
        connect_timeout=min(timeout, _number(remote, "connect-timeout", 5.0, low=0.001)),
        retries=int(_number(remote, "retries", 2, integer=True)),
        max_response_bytes=int(_number(remote, "max-response-bytes", 1 << 30, integer=True, low=1)),
        json_max_bytes=int(_number(remote, "json-max-bytes", 1 << 20, integer=True)),
        pool_size=int(_number(remote, "pool-size", 8, integer=True, low=1)),
        tls_ca=tls["tls-ca"], tls_cert=tls["tls-cert"], tls_key=tls["tls-key"], token=_token(remote),
        shown=remote.endpoint, grpc_port=int(grpc_port) if grpc_port else None,
    )
