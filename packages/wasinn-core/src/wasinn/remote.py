"""Remote models: a name the embedder mapped to a model on an inference server.

The core knows only the generic part: a name, a URI (``http://``, ``https://``, ``grpc://``,
``grpcs://`` ...) and a mapping of string options (timeouts, retries, credentials). It never
contacts the server: a backend that lists :data:`ModelFormat.REMOTE <wasinn.enums.ModelFormat>` in
its ``BackendInfo.formats`` scores such a model and speaks the protocol. Every other backend
declines it (ranking), and a model that came from a local file is never a remote model, so it is
never sent anywhere.

Credentials come only from the host's configuration (the embedder, the CLI), never from a guest,
and never reach a log: :func:`redact_uri` and :meth:`RemoteModel.public_options` are what logs,
``describe()`` and ``wasinn explain`` show.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from wasinn.errors import ConfigurationError

#: Option keys whose values are secrets (or name where a secret is): shown as ``***``.
SECRET_OPTIONS = frozenset({"token", "password", "api-key", "authorization", "header"})
# Query parameters and option keys that look like secrets, by name.
_SECRET_NAME = re.compile(r"(token|secret|passw|key|auth|sig|credential)", re.IGNORECASE)
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")
_OPTION_KEY = re.compile(r"^[a-z][a-z0-9\-]*$")
REDACTED = "***"


def is_secret_option(key: str) -> bool:
    """True for an option whose value must never be shown (a token, a password, a private key's
    passphrase). File *paths* of TLS material (``tls-key``) are not secrets themselves, but they are
    hidden too: knowing where the key lives is one step from reading it."""
    return key in SECRET_OPTIONS or bool(_SECRET_NAME.search(key))


def redact_uri(uri: str) -> str:
    """``uri`` without its credentials: the password of ``user:password@`` and the value of every
    query parameter whose name looks like a secret become ``***``. Never raises."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable uri>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        # user:password keeps the user; a lone userinfo is often a token itself: hide it all.
        user, colon, _ = userinfo.partition(":")
        netloc = f"{user}:{REDACTED}@{hostport}" if colon and user else f"{REDACTED}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        query = urlencode([(k, REDACTED if _SECRET_NAME.search(k) else v) for k, v in pairs], safe="*")
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))


@dataclass(frozen=True, slots=True)
class RemoteModel:
    """A model served by an inference server, as the host's configuration describes it.

    ``uri`` is kept whole (it may carry credentials); show :attr:`endpoint` instead. ``options`` are
    free-form ``key -> value`` strings that the serving backend validates (see its docs); they are
    left out of ``repr`` because they may hold a token.
    """

    name: str
    uri: str = field(repr=False)
    options: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def scheme(self) -> str:
        return urlsplit(self.uri).scheme.lower()

    @property
    def endpoint(self) -> str:
        """The URI without credentials: safe to log and show."""
        return redact_uri(self.uri)

    def public_options(self) -> dict[str, str]:
        """The options with every secret value replaced by ``***``."""
        return {k: (REDACTED if is_secret_option(k) else v) for k, v in sorted(self.options.items())}

    def describe(self) -> str:
        return f"remote model {self.name!r} at {self.endpoint}"


def make_remote(name: str, uri: str, options: Mapping[str, object] | None = None) -> RemoteModel:
    """Check a name, a URI and options from the host's configuration and build a :class:`RemoteModel`.

    The URI needs a scheme and a host (``http://127.0.0.1:8000/v2/models/affine``,
    ``grpc://10.0.0.5:8001/affine``); what the path means is the serving backend's business.
    Option keys are lower-case words joined by ``-``; ``_`` is accepted and turned into ``-``.
    """
    if not name or not _NAME.match(name):
        raise ConfigurationError(f"remote model name {name!r}: use letters, digits, '_', '-' and '.'")
    try:
        parts = urlsplit(uri.strip())
        port = parts.port  # raises on a non-numeric port
    except ValueError as exc:
        raise ConfigurationError(f"remote model {name!r}: cannot parse {redact_uri(uri)}: {exc}") from None
    if not parts.scheme or not parts.hostname:
        raise ConfigurationError(f"remote model {name!r}: {redact_uri(uri)} needs a scheme and a host "
                                 "(e.g. http://127.0.0.1:8000/v2/models/NAME or grpc://127.0.0.1:8001/NAME)")
    if parts.fragment:
        raise ConfigurationError(f"remote model {name!r}: {redact_uri(uri)} has a #fragment")
    del port
    clean: dict[str, str] = {}
    for key, value in (options or {}).items():
        normal = str(key).strip().lower().replace("_", "-")
        if not _OPTION_KEY.match(normal):
            raise ConfigurationError(f"remote model {name!r}: bad option name {key!r}")
        clean[normal] = "" if value is None else str(value)
    return RemoteModel(name=name, uri=uri.strip(), options=MappingProxyType(clean))


def parse_remote_flag(value: str) -> tuple[str, str]:
    """``NAME=URI`` (``--nn-remote``) -> (name, uri)."""
    name, sep, uri = value.partition("=")
    if not sep or not name or not uri:
        raise ConfigurationError(f"--nn-remote {redact_uri(value)!r}: expected NAME=URI, e.g. "
                                 "affine=http://127.0.0.1:8000/v2/models/affine")
    return name.strip(), uri.strip()


def parse_remote_option(value: str) -> tuple[str, str, str]:
    """``NAME:KEY=VALUE`` (``--nn-remote-option``) -> (name, key, value). The value may be empty."""
    head, sep, option_value = value.partition("=")
    name, colon, key = head.partition(":")
    if not sep or not colon or not name or not key:
        shown = f"{head}=..." if sep else value
        raise ConfigurationError(f"--nn-remote-option {shown!r}: expected NAME:KEY=VALUE, e.g. affine:timeout=5")
    return name.strip(), key.strip(), option_value
