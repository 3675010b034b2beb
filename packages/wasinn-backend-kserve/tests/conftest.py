"""Fixtures: the affine model file, and MLServer and KServe ModelServer on loopback (one of each for
the session; tests that kill a server get their own)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kserve_servers import NN_RUN, Server, affine_model, kserve, mlserver
from wasinn_backend_kserve.endpoint import close_all

from wasinn.cli.main import main


@pytest.fixture(scope="session")
def affine_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "affine.onnx"
    path.write_bytes(affine_model())
    return path


def _serve(make: Callable[[Path, Path], Server], root: Path, model: Path) -> Iterator[Server]:
    server = make(root, model)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def ml_server(tmp_path_factory: pytest.TempPathFactory, affine_file: Path) -> Iterator[Server]:
    yield from _serve(mlserver, tmp_path_factory.mktemp("ml"), affine_file)


@pytest.fixture(scope="session")
def ks_server(tmp_path_factory: pytest.TempPathFactory, affine_file: Path) -> Iterator[Server]:
    yield from _serve(kserve, tmp_path_factory.mktemp("ks"), affine_file)


@pytest.fixture
def own_kserve(tmp_path: Path, affine_file: Path) -> Iterator[Server]:
    """A KServe server of this test's own, to kill and restart."""
    yield from _serve(kserve, tmp_path, affine_file)


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("WASINN_BACKENDS", "kserve,onnx")
    monkeypatch.delenv("WASINN_DISABLE_BACKENDS", raising=False)
    monkeypatch.setenv("WASINN_HARDWARE", '{"accelerators": []}')
    logging.getLogger("wasinn").propagate = True
    yield
    close_all()  # each test starts with fresh pools (and relearns which servers lack binary REST)
    logging.getLogger("wasinn").propagate = True


@pytest.fixture
def nn_run(tmp_path: Path) -> Callable[..., int]:
    """Run the nn-run guest with ``tmp_path`` preopened as ``/d``: ``nn_run(*guest_args, flags=[...])``."""

    def run(*guest_args: str, flags: tuple[str, ...] | list[str] = ()) -> int:
        return main(["run", "--dir", f"{tmp_path}::/d", *flags, str(NN_RUN), *guest_args])

    return run
