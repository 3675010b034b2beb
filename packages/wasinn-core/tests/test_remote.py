"""Remote models in the core: parsing, redaction, registration, ranking and ``explain``, with a
test backend that lists ``ModelFormat.REMOTE`` (no server: the core never contacts one)."""

from __future__ import annotations

import json
import logging

import pytest

import wasinn
from wasinn import BackendInfo, Decline, ErrorCode, ModelFormat, Score, WasiNnError, hookimpl
from wasinn.cli.main import main
from wasinn.cli.options import parse_nn_remotes
from wasinn.errors import ConfigurationError
from wasinn.ranking import choose
from wasinn.remote import make_remote, parse_remote_flag, parse_remote_option, redact_uri
from wasinn_test_backends import affine_model
from wasinn_test_backends.fake import FakeBackend

CPU_MACHINE = wasinn.Hardware(cpu=wasinn.Cpu("x86_64", "amd", "test", 2, frozenset()))
URI = "http://127.0.0.1:8000/v2/models/affine"


class RemoteOnly(FakeBackend):
    """A backend that serves remote models only (what wasinn-backend-kserve declares); its other
    hooks are the fake backend's, which cannot load a model without bytes."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[wasinn.ModelDescription] = []

    @hookimpl
    def backend_info(self) -> BackendInfo:
        return BackendInfo(runtime="test-remote", runtime_version="0", formats=(ModelFormat.REMOTE,))

    @hookimpl
    def can_handle(self, model: wasinn.ModelDescription, hw: wasinn.Hardware) -> Score | Decline | None:
        self.asked.append(model)
        assert model.remote is not None
        return Score(80, f"mapped to {model.remote.endpoint}", device=model.remote.endpoint)


class NoFormats(FakeBackend):
    """A backend that lists no formats: it is asked about everything local, never about a remote."""

    @hookimpl
    def backend_info(self) -> BackendInfo:
        return BackendInfo(runtime="any", runtime_version="0", formats=())

    @hookimpl
    def can_handle(self, model: wasinn.ModelDescription, hw: wasinn.Hardware) -> Score | Decline | None:
        return Score(99, "takes anything")


def make_host(**backends: object) -> wasinn.WasiNnHost:
    return wasinn.WasiNnHost(backends=backends, entry_points=False, hardware=CPU_MACHINE, allow=list(backends))


# -- parsing and redaction -----------------------------------------------------------------------


def test_flags_parse_into_names_uris_and_options() -> None:
    assert parse_remote_flag(f"affine={URI}") == ("affine", URI)
    assert parse_remote_option("affine:timeout=2.5") == ("affine", "timeout", "2.5")
    assert parse_remote_option("affine:token=a=b") == ("affine", "token", "a=b")  # the value may hold '='
    found = parse_nn_remotes([f"affine={URI}", "b=grpc://127.0.0.1:8001/b"],
                             ["affine:timeout=3", "affine:retries=1", "b:transport=grpc"])
    assert found == {"affine": (URI, {"timeout": "3", "retries": "1"}),
                     "b": ("grpc://127.0.0.1:8001/b", {"transport": "grpc"})}


@pytest.mark.parametrize("bad", ["affine", "=http://x/", "affine="])
def test_a_malformed_remote_flag_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="NAME=URI"):
        parse_remote_flag(bad)


@pytest.mark.parametrize("bad", ["affine=3", "affine:timeout", ":timeout=3", "affine:=3"])
def test_a_malformed_remote_option_is_a_configuration_error(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="NAME:KEY=VALUE"):
        parse_remote_option(bad)


def test_an_option_for_an_unmapped_name_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="no --nn-remote other"):
        parse_nn_remotes([f"affine={URI}"], ["other:timeout=1"])
    with pytest.raises(ConfigurationError, match="twice"):
        parse_nn_remotes([f"affine={URI}", f"affine={URI}"], [])


@pytest.mark.parametrize("uri", ["127.0.0.1:8000/v2/models/a", "http:///v2/models/a", "http://h:port/x",
                                 "http://h:1/a#frag"])
def test_a_uri_without_scheme_or_host_is_refused(uri: str) -> None:
    with pytest.raises(ConfigurationError):
        make_remote("a", uri)


def test_bad_names_and_option_keys_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="name"):
        make_remote("a/b", URI)
    with pytest.raises(ConfigurationError, match="option"):
        make_remote("a", URI, {"Bad Key": "1"})
    assert dict(make_remote("a", URI, {"tls_ca": "/ca.pem"}).options) == {"tls-ca": "/ca.pem"}


def test_redaction_removes_passwords_and_secret_query_values() -> None:
    assert redact_uri("https://alice:s3cret@h:8000/v2/models/m") == "https://alice:***@h:8000/v2/models/m"
    assert redact_uri("https://tok@h/v2/models/m") == "https://***@h/v2/models/m"
    shown = redact_uri("http://h/v2/models/m?api_key=s3cret&version=2&sig=abc")
    assert "s3cret" not in shown and "abc" not in shown and "version=2" in shown
    assert redact_uri(URI) == URI
    assert redact_uri("http://[::1") == "<unparsable uri>"


def test_secrets_never_appear_in_repr_describe_or_public_options() -> None:
    remote = make_remote("a", "https://bob:pw123@h/v2/models/a", {"token": "tok-456", "tls-key": "/k.pem",
                                                                  "timeout": "5"})
    for text in (repr(remote), remote.describe(), remote.endpoint, json.dumps(remote.public_options())):
        assert "pw123" not in text and "tok-456" not in text and "/k.pem" not in text
    assert remote.public_options()["timeout"] == "5"
    assert remote.options["token"] == "tok-456"  # the backend still gets it


# -- registration and ranking --------------------------------------------------------------------


def test_only_a_remote_backend_scores_a_remote_model() -> None:
    remote = RemoteOnly()
    host = make_host(fake=FakeBackend(), anything=NoFormats(), remote=remote)
    host.register_remote("affine", URI, options={"timeout": "2"})
    ranking = host.explain_named("affine")
    assert ranking.winner is not None and ranking.winner.backend == "remote"
    assert ranking.model.format == ModelFormat.REMOTE and ranking.model.builders == ()
    refusals = {c.backend: c.reason for c in ranking.candidates if not c.eligible}
    assert set(refusals) == {"fake", "anything"}
    assert all(URI in reason for reason in refusals.values())
    assert ranking.to_dict()["remote"] == URI
    assert remote.asked[0].remote is not None and remote.asked[0].remote.options["timeout"] == "2"


def test_a_local_model_is_never_offered_to_a_remote_backend() -> None:
    remote = RemoteOnly()
    host = make_host(fake=FakeBackend(), remote=remote)
    host.register_model("local", affine_model())
    ranking = host.explain_named("local")
    assert ranking.winner is not None and ranking.winner.backend == "fake"
    assert remote.asked == []
    forced = make_host(fake=FakeBackend(), remote=remote)
    forced.register_model("local", affine_model(), backend="remote")
    with pytest.raises(WasiNnError) as info:
        choose(forced.explain_named("local"))
    assert info.value.code is ErrorCode.INVALID_ENCODING
    assert remote.asked == []


def test_a_remote_model_with_no_remote_backend_is_a_reasoned_error() -> None:
    host = make_host(fake=FakeBackend())
    host.register_remote("affine", URI)
    with pytest.raises(WasiNnError) as info:
        host.load_named("affine")
    assert info.value.code is ErrorCode.INVALID_ENCODING
    assert "serves local models" in info.value.message and URI in info.value.message


def test_credentials_never_reach_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="wasinn")
    host = make_host(fake=FakeBackend(), remote=RemoteOnly())
    host.register_remote("affine", "https://bob:pw123@h/v2/models/affine", options={"token": "tok-456"})
    with pytest.raises(WasiNnError):
        host.load_named("affine")  # the fake load finds no bytes: it fails after ranking and logging
    assert "h/v2/models/affine" in caplog.text
    assert "pw123" not in caplog.text and "tok-456" not in caplog.text


def test_unknown_name_is_not_found() -> None:
    host = make_host(remote=RemoteOnly())
    with pytest.raises(WasiNnError) as info:
        host.explain_named("nope")
    assert info.value.code is ErrorCode.NOT_FOUND


# -- CLI ------------------------------------------------------------------------------------------


def test_explain_a_named_remote_says_which_server(capsys: pytest.CaptureFixture[str]) -> None:
    # The entry-point test backends serve no remote models: explain says so, naming the server.
    status = main(["explain", "--nn-remote", "affine=https://bob:pw123@h:8000/v2/models/affine",
                   "--nn-remote-option", "affine:token=tok-456", "affine"])
    out = capsys.readouterr().out
    assert status == 1
    assert "remote model 'affine' at https://bob:***@h:8000/v2/models/affine" in out
    assert "serves local models" in out
    assert "pw123" not in out and "tok-456" not in out


def test_run_refuses_a_remote_option_without_its_remote(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["run", "--nn-remote-option", "affine:timeout=1", "missing.wasm"])
    assert status == 2
    assert "no --nn-remote affine" in capsys.readouterr().err
