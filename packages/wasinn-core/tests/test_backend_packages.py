"""Every backend package of the repository is written the one way (wasinn.forwarding): its ``__init__`` is a
short declaration, and each hook is marked ``@hookimpl`` once. Read from the sources: no runtime needed."""

from __future__ import annotations

import ast
import io
import tokenize
from collections import Counter
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
MAX_INIT_LINES = 40
PACKAGES = sorted(p for p in (REPO / "packages").glob("wasinn-backend-*/src/wasinn_backend_*") if p.is_dir())
EXAMPLES = sorted(p for p in (REPO / "examples").glob("backend-*/src/wasinn_backend_*") if p.is_dir())
TEMPLATE = REPO / "packages/wasinn-core/src/wasinn/testing/backend_template/src/wasinn_backend_yourbackend"
ALL_PACKAGES = [*PACKAGES, *EXAMPLES, TEMPLATE]


def lines_of_code(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    tree = ast.parse(source)
    docstrings: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    layout = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING,
              tokenize.ENDMARKER}
    code: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in layout:
            code.update(range(token.start[0], token.end[0] + 1))
    return len(code - docstrings)


def test_lines_of_code_are_counted_without_docstrings_comments_and_blank_lines() -> None:
    source = '"""Module\n\ndocstring."""\n\n# a comment\nx = (1,\n     2)  # two lines\n\n\ndef f():\n' \
             '    """Doc."""\n    return """not a\n    docstring"""\n'
    assert lines_of_code(source) == 5


def _name(package: Path) -> str:
    return package.relative_to(REPO).as_posix()


def test_the_repository_has_backend_packages() -> None:
    assert len(PACKAGES) >= 7 and EXAMPLES and TEMPLATE.is_dir()


@pytest.mark.parametrize("package", ALL_PACKAGES, ids=_name)
def test_the_package_init_is_a_short_declaration(package: Path) -> None:
    count = lines_of_code((package / "__init__.py").read_text())
    assert count <= MAX_INIT_LINES, (f"{_name(package)}/__init__.py has {count} lines of code (at most "
                                     f"{MAX_INIT_LINES}): declare the hooks with wasinn.forwarding.forward_hooks")


def _is_hookimpl(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return (isinstance(target, ast.Name) and target.id == "hookimpl") or \
        (isinstance(target, ast.Attribute) and target.attr == "hookimpl")


def _forwarded(call: ast.Call) -> list[str]:
    """The hook names of a ``forward_hooks(module, target, hooks=(...))`` call (a literal, as declared)."""
    [hooks] = [k.value for k in call.keywords if k.arg == "hooks"]
    assert isinstance(hooks, ast.Tuple | ast.List), "forward_hooks(..., hooks=) lists the names literally"
    return [ast.literal_eval(element) for element in hooks.elts]


def hook_marks(package: Path) -> Counter[str]:
    """How many times each hook is marked in the package: ``@hookimpl`` functions and forwarded hooks."""
    marks: Counter[str] = Counter()
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(map(_is_hookimpl, node.decorator_list)):
                marks[node.name] += 1
            elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) \
                    == "forward_hooks":
                marks.update(_forwarded(node))
    return marks


@pytest.mark.parametrize("package", ALL_PACKAGES, ids=_name)
def test_each_hook_is_marked_once(package: Path) -> None:
    marks = hook_marks(package)
    assert {"backend_info", "load", "compute"} <= set(marks), marks
    twice = sorted(hook for hook, count in marks.items() if count > 1)
    assert not twice, (f"{_name(package)} marks hook(s) {', '.join(twice)} more than once: mark the hook where "
                       f"wasinn finds it (the forwarder), not the implementation's method")


@pytest.mark.parametrize("package", PACKAGES, ids=_name)
def test_the_package_declares_its_hooks_with_forward_hooks(package: Path) -> None:
    tree = ast.parse((package / "__init__.py").read_text())
    calls = [node for node in ast.walk(tree) if isinstance(node, ast.Call)
             and getattr(node.func, "id", None) == "forward_hooks"]
    assert calls, f"{_name(package)}/__init__.py does not declare its hooks with forward_hooks"
    defined = [node.name for node in tree.body if isinstance(node, ast.FunctionDef)]
    assert not defined, f"{_name(package)}/__init__.py defines functions ({', '.join(defined)}): declare them"
