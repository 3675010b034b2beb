"""Generate a new backend package from wasinn's backend template.

The template (``wasinn/testing/backend_template/``, shipped in the wasinn-core wheel) is a complete,
working backend named ``yourbackend``: a pure-NumPy runtime for a tiny format of its own, a test
suite that runs the conformance kit, a README. Its hooks are written the one way every wasinn
backend writes them: ``backend_info`` and ``detect_format`` defined in the module the entry point
names, the others declared with :func:`wasinn.forwarding.forward_hooks` and implemented by the
methods of one class (``YourbackendBackend``). Rendering copies it and renames ``yourbackend``
everywhere (files, package, entry point, classes)::

    python -m wasinn.testing.template mybackend --dir ./wasinn-backend-mybackend

or, from Python, ``render_backend_template("mybackend", Path("wasinn-backend-mybackend"))``.

Nothing of pytest is imported here, so the ``wasinn`` command line can call it.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wasinn import __version__
from wasinn.errors import ConfigurationError

__all__ = ["TEMPLATE_DIR", "BackendNames", "backend_names", "new_backend_command", "render_backend_template"]

#: The canonical template.
TEMPLATE_DIR = Path(__file__).resolve().parent / "backend_template"
#: The template's own name, as it appears in file contents and paths.
PLACEHOLDER = "yourbackend"
#: The wasinn-core requirement written in the template's pyproject.toml (re-pinned on rendering).
TEMPLATE_REQUIREMENT = "wasinn-core>=0.1,<0.2"

NAME_RE = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
SKIPPED = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


@dataclass(frozen=True)
class BackendNames:
    """Every spelling of a backend's name that the template uses."""

    name: str  # the entry-point name and --backend value: "my-runtime"
    snake: str  # "my_runtime"
    camel: str  # "MyRuntime"
    upper: str  # "MY_RUNTIME"

    @property
    def distribution(self) -> str:
        return f"wasinn-backend-{self.snake.replace('_', '-')}"

    @property
    def package(self) -> str:
        return f"wasinn_backend_{self.snake}"

    def replacements(self) -> list[tuple[str, str]]:
        """(placeholder spelling, replacement), longest first."""
        return [
            (f"wasinn-backend-{PLACEHOLDER}", self.distribution),
            (f"wasinn_backend_{PLACEHOLDER}", self.package),
            (PLACEHOLDER.capitalize(), self.camel),
            (PLACEHOLDER.upper(), self.upper),
            (PLACEHOLDER, self.name),
        ]


def backend_names(name: str) -> BackendNames:
    """Check ``name`` (lowercase letters and digits, words joined by ``-`` or ``_``) and spell it."""
    if not NAME_RE.match(name or ""):
        raise ConfigurationError(f"backend name {name!r}: use lowercase letters and digits, words joined by "
                                 f"'-' or '_', starting with a letter (e.g. 'mybackend', 'my-runtime')")
    if name.startswith(("wasinn-", "wasinn_")):
        raise ConfigurationError(f"backend name {name!r}: give the short name; the distribution will be "
                                 f"wasinn-backend-NAME")
    words = re.split(r"[-_]", name)
    return BackendNames(name=name, snake="_".join(words), camel="".join(w.capitalize() for w in words),
                        upper="_".join(words).upper())


def core_requirement(version: str = __version__) -> str:
    """``wasinn-core>=X.Y,<X.Y+1`` for the running wasinn (the contract changes only with the minor
    version before 1.0, with the major version after)."""
    parts = [int(p) for p in re.findall(r"\d+", version)[:2]] + [0, 0]
    major, minor = parts[0], parts[1]
    upper = f"{major}.{minor + 1}" if major == 0 else f"{major + 1}"
    return f"wasinn-core>={major}.{minor},<{upper}"


def render(text: str, names: BackendNames, requirement: str) -> str:
    text = text.replace(TEMPLATE_REQUIREMENT, requirement)
    for old, new in names.replacements():
        text = text.replace(old, new)
    return text


def render_backend_template(name: str, dest: Path, template_dir: Path | None = None) -> Path:
    """Create the backend project ``dest`` (which must not exist, or be empty) for backend ``name``.

    Returns ``dest``. Raises :class:`~wasinn.ConfigurationError` for a bad name or a non-empty
    ``dest``.
    """
    names = backend_names(name)
    source = Path(template_dir) if template_dir is not None else TEMPLATE_DIR
    if not (source / "pyproject.toml").is_file():
        raise ConfigurationError(f"{source} is not a backend template (no pyproject.toml)")
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigurationError(f"{dest} already exists and is not an empty directory")
    requirement = core_requirement()
    files = sorted(p for p in source.rglob("*")
                   if p.is_file() and not SKIPPED.intersection(p.relative_to(source).parts)
                   and p.suffix not in (".pyc", ".pyo"))
    for path in files:
        relative = render(path.relative_to(source).as_posix(), names, requirement)
        target = dest / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        try:
            target.write_text(render(data.decode("utf-8"), names, requirement), encoding="utf-8")
        except UnicodeDecodeError:
            target.write_bytes(data)
    return dest


def new_backend_command(args: argparse.Namespace) -> int:
    """``wasinn new-backend NAME [--dir DIR]``: render the template and say what to do next."""
    names = backend_names(args.name)
    dest = Path(args.dir) if args.dir else Path(names.distribution)
    render_backend_template(args.name, dest)
    print(f"created {dest}/ for backend {names.name!r} (distribution {names.distribution}, package "
          f"{names.package}); next:\n"
          f"  cd {dest}\n"
          f"  python -m pip install -e '.[test]'\n"
          f"  python -m pytest          # wasinn's conformance kit runs against it\n"
          f"then make it yours: src/{names.package}/backend.py defines backend_info and detect_format, and\n"
          f"declares the other hooks with forward_hooks; class {names.camel}Backend implements them")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wasinn.testing.template",
                                     description="Create a new wasinn backend package from the template.")
    parser.add_argument("name", metavar="NAME", help="the backend's name (entry point and --backend value)")
    parser.add_argument("--dir", metavar="DIR", help="the project directory to create (default: ./wasinn-backend-NAME)")
    args = parser.parse_args(argv)
    try:
        return new_backend_command(args)
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
