"""No guest-chosen paths: ``load_by_name`` resolves only names the embedder registered.

A name is a dictionary key, never a path: separators, ``..``, absolute paths, NUL bytes and the
path of a real model file are names nobody registered (``not_found``); invalid UTF-8 and names over
4096 bytes are ``invalid_argument``. While the guest's call runs, no file is opened or even looked at.
"""

from __future__ import annotations

import builtins
import io
import os
import pathlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import wasmtime
from hostile_abi import (
    CANONICAL_MODELS,
    INVALID_ARGUMENT,
    NOT_FOUND,
    SUCCESS,
    AbiHarness,
    LoadByName,
    fake_host,
    make_linker,
    quiet_wasinn,
)

ENGINE = wasmtime.Engine()
MODEL = CANONICAL_MODELS["f32"]

# (object, attribute) pairs through which Python code reads, opens or probes a file.
FILE_ACCESS = [
    (builtins, "open"), (io, "open"), (io, "open_code"), (os, "open"), (os, "stat"), (os, "lstat"),
    (os, "access"), (os, "listdir"), (os, "scandir"), (os.path, "exists"), (os.path, "isfile"),
    (pathlib.Path, "open"), (pathlib.Path, "read_bytes"), (pathlib.Path, "read_text"), (pathlib.Path, "stat"),
    (pathlib.Path, "exists"), (pathlib.Path, "is_file"), (pathlib.Path, "resolve"),
]


@contextmanager
def record_file_access() -> Iterator[list[str]]:
    """Record every call of the functions in :data:`FILE_ACCESS` (they still work)."""
    seen: list[str] = []
    saved = [(owner, name, getattr(owner, name)) for owner, name in FILE_ACCESS]

    def spy(label: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append(f"{label}{args!r}")
            return real(*args, **kwargs)
        return wrapper

    for owner, name, real in saved:
        setattr(owner, name, spy(f"{getattr(owner, '__name__', owner)}.{name}", real))
    try:
        yield seen
    finally:
        for owner, name, real in saved:
            setattr(owner, name, real)


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    """A real, loadable model file: if any name were used as a path, this one would load."""
    path = tmp_path / "model.wtst"
    path.write_bytes(MODEL)
    (tmp_path / "m").write_bytes(MODEL)  # a file named like the registered name, in the cwd
    return path


@pytest.fixture
def harness(tmp_path: Path, model_file: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[AbiHarness]:
    monkeypatch.chdir(tmp_path)
    host = fake_host()
    host.register_model("dir/model", MODEL)  # the embedder may use any string as a name
    host.register_model("from-file", model_file)  # read from disk on first use: the embedder's path
    with quiet_wasinn() as errors:
        h = AbiHarness(host, ENGINE, make_linker(host, ENGINE))
        yield h
        h.finish(errors)
        h.close()
    host.close()


def hostile_names(model_file: Path) -> dict[str, bytes]:
    real = str(model_file).encode()
    return {
        "parent": b"../m", "dot-slash": b"./m", "trailing-slash": b"m/", "absolute": b"/m", "dotdot": b"..",
        "dot": b".", "inner-dotdot": b"m/../m", "backslash": b"..\\m", "etc-passwd": b"/etc/passwd",
        "proc": b"/proc/self/environ", "file-url": b"file:///etc/passwd", "tilde": b"~/m", "env-var": b"$HOME/m",
        "percent-encoded": b"%2e%2e/m", "real-file-absolute": real, "real-file-relative": b"model.wtst",
        "real-file-parent": b"../" + model_file.parent.name.encode() + b"/model.wtst",
        "real-file-dotdot-registered": b"dir/../dir/model", "nul-then-path": b"m\0../x", "leading-nul": b"\0m",
        "two-nuls": b"m\0\0", "nul-only": b"\0", "empty": b"", "upper": b"M", "space": b" m", "trailing-space": b"m ",
        "fullwidth": "ｍ".encode(), "zero-width": "m\u200b".encode(), "4096-bytes": b"a" * 4096,
        "registered-path-as-name": str(model_file).encode(),
    }


NAME_IDS = list(hostile_names(Path("/x/model.wtst")))


@pytest.mark.parametrize("case", NAME_IDS)
def test_hostile_names_are_not_found_and_touch_no_file(harness: AbiHarness, model_file: Path, case: str) -> None:
    name = hostile_names(model_file)[case]
    for config in (None, b"{}"):
        with record_file_access() as seen:
            errno = harness.step(LoadByName(name, config))
        assert errno == NOT_FOUND, (case, config)
        assert seen == [], f"load_by_name({name!r}) looked at files: {seen}"


INVALID_NAMES = {
    "invalid-utf8": b"\xff\xfe", "truncated-utf8": b"m\xc3", "overlong-slash": b"\xc0\xaf",
    "surrogate": b"\xed\xa0\x80", "4097-bytes": b"a" * 4097, "1MiB": b"a" * (1 << 20),
}


@pytest.mark.parametrize("case", list(INVALID_NAMES))
def test_undecodable_or_overlong_names_are_invalid_argument(harness: AbiHarness, case: str) -> None:
    with record_file_access() as seen:
        assert harness.step(LoadByName(INVALID_NAMES[case])) == INVALID_ARGUMENT
    assert seen == []


def test_registered_names_are_found_exactly(harness: AbiHarness) -> None:
    # The controls: without them the tests above would pass on a host that finds nothing.
    assert harness.step(LoadByName(b"m")) == SUCCESS
    assert harness.step(LoadByName(b"m\0")) == SUCCESS  # C guests pass strlen + 1
    assert harness.step(LoadByName(b"dir/model")) == SUCCESS


def test_only_the_embedders_path_is_read_and_only_once(harness: AbiHarness, model_file: Path) -> None:
    with record_file_access() as seen:
        assert harness.step(LoadByName(b"from-file")) == SUCCESS
    assert seen, "the registered file should be read on first use"
    assert all(str(model_file) in entry or "model.wtst" in entry for entry in seen), seen
    with record_file_access() as seen:
        assert harness.step(LoadByName(b"from-file")) == SUCCESS  # cached: no second read
    assert seen == []


def test_the_spy_sees_file_access() -> None:
    # The control of the control: record_file_access really catches a read.
    with record_file_access() as seen:
        Path(__file__).read_bytes()
    assert seen
