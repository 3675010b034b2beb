"""A backend generated from wasinn's template installs with pip into a fresh environment and passes
its own tests, the conformance kit included, out of the box."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from venvs import REPO, Venv

from wasinn.errors import ConfigurationError
from wasinn.testing import render_backend_template
from wasinn.testing.template import TEMPLATE_DIR, backend_names, core_requirement, main


def test_generated_backend_passes_the_kit_in_a_fresh_venv(tmp_path: Path, fresh_venv: Venv) -> None:
    project = render_backend_template("acme-npu", tmp_path / "wasinn-backend-acme-npu")
    fresh_venv.install(project)
    listed = fresh_venv.run("-m", "wasinn", "backends", "--json", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert '"name": "acme-npu"' in listed.stdout and '"distribution": "wasinn-backend-acme-npu"' in listed.stdout

    result = fresh_venv.pytest(project / "tests")
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-6000:]
    assert "wasinn conformance kit: acme-npu (" in report
    passed = int(re.search(r"(\d+) passed", report).group(1))  # type: ignore[union-attr]
    assert passed >= 45, report[-3000:]


def test_rendering_renames_everything(tmp_path: Path) -> None:
    project = render_backend_template("acme-npu", tmp_path / "out")
    files = sorted(p.relative_to(project).as_posix() for p in project.rglob("*") if p.is_file())
    assert files == [
        "README.md",
        "pyproject.toml",
        "src/wasinn_backend_acme_npu/__init__.py",
        "src/wasinn_backend_acme_npu/backend.py",
        "src/wasinn_backend_acme_npu/model.py",
        "src/wasinn_backend_acme_npu/py.typed",
        "tests/test_conformance.py",
        "tests/test_model.py",
    ]
    leftovers = [f for f in files if "yourbackend" in (project / f).read_text().lower()]
    assert not leftovers, leftovers
    pyproject = (project / "pyproject.toml").read_text()
    assert 'name = "wasinn-backend-acme-npu"' in pyproject
    assert '[project.entry-points."wasinn.backends"]\nacme-npu = "wasinn_backend_acme_npu.backend"' in pyproject
    assert f'"{core_requirement()}"' in pyproject
    assert "class TestAcmeNpuConformance(BackendConformance):" in (project / "tests/test_conformance.py").read_text()
    for path in project.rglob("*.py"):
        compile(path.read_text(), str(path), "exec")  # valid Python after renaming


def test_the_template_is_shipped_once_inside_wasinn_core() -> None:
    # installed (editable or not), the template is the package data of wasinn.testing
    source = REPO / "packages" / "wasinn-core" / "src" / "wasinn" / "testing" / "backend_template"
    assert TEMPLATE_DIR.parts[-2:] == ("testing", "backend_template")
    assert sorted(str(p.relative_to(TEMPLATE_DIR)) for p in TEMPLATE_DIR.rglob("*") if "__pycache__" not in str(p)) \
        == sorted(str(p.relative_to(source)) for p in source.rglob("*") if "__pycache__" not in str(p))
    assert sorted(p.name for p in (REPO / "templates" / "backend").iterdir()) == ["README.md"]
    assert "packages/wasinn-core/src/wasinn/testing/backend_template/" in \
        (REPO / "templates" / "backend" / "README.md").read_text()


@pytest.mark.parametrize(("name", "spelled"), [
    ("mybackend", ("mybackend", "wasinn-backend-mybackend", "wasinn_backend_mybackend", "Mybackend")),
    ("my-runtime", ("my-runtime", "wasinn-backend-my-runtime", "wasinn_backend_my_runtime", "MyRuntime")),
    ("ort_gpu2", ("ort_gpu2", "wasinn-backend-ort-gpu2", "wasinn_backend_ort_gpu2", "OrtGpu2")),
])
def test_names(name: str, spelled: tuple[str, str, str, str]) -> None:
    names = backend_names(name)
    assert (names.name, names.distribution, names.package, names.camel) == spelled


@pytest.mark.parametrize("name", ["", "My", "1st", "a--b", "a b", "wasinn-backend-x", "x-", "ünï"])
def test_bad_names_are_refused(name: str) -> None:
    with pytest.raises(ConfigurationError):
        backend_names(name)


def test_existing_directories_are_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    with pytest.raises(ConfigurationError, match="not an empty directory"):
        render_backend_template("x", tmp_path / "taken")
    assert main(["x", "--dir", str(tmp_path / "taken")]) == 2
    assert "not an empty directory" in capsys.readouterr().err
    assert main(["x", "--dir", str(tmp_path / "fresh")]) == 0
    assert (tmp_path / "fresh" / "src" / "wasinn_backend_x" / "backend.py").is_file()


def test_core_requirement_pins_the_series() -> None:
    assert core_requirement("0.1.0") == "wasinn-core>=0.1,<0.2"
    assert core_requirement("0.12.3rc1") == "wasinn-core>=0.12,<0.13"
    assert core_requirement("1.4.0") == "wasinn-core>=1.4,<2"
