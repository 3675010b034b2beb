"""The documentation's examples, run for real, and its command lines, parsed by wasinn's own parser.

The Python examples live in docs/examples/ and the pages include them verbatim (pymdownx.snippets),
so what these tests run is what readers see. They run against the test-only ``fake`` backend
(wasinn-test-backends), so they need no ML runtime.
"""

from __future__ import annotations

import importlib.util
import re
import shlex
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from wasinn.abi.profiles import PROFILES
from wasinn.cli import options
from wasinn.cli.main import build_parser, resolve_paths
from wasinn.enums import ErrorCode
from wasinn_test_backends import affine_model, fake

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
EXAMPLES = DOCS / "examples"
NN_RUN = REPO / "guests" / "nn-run" / "nn-run.wasm"


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"docs_example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _only_the_fake_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WASINN_BACKENDS", "fake")
    monkeypatch.delenv("WASINN_DISABLE_BACKENDS", raising=False)
    monkeypatch.delenv("WASINN_HARDWARE", raising=False)
    fake.LIVE_GRAPHS.clear()
    fake.LIVE_CONTEXTS.clear()


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A model (y = 2x + 1 on f32[1, 4]) and an input x = [0, 1, 2, 3], for the nn-run guest."""
    (tmp_path / "affine.wtst").write_bytes(affine_model())
    np.arange(4, dtype="<f4").tofile(tmp_path / "x.f32")
    return tmp_path


def nn_run_args(*extra: str) -> list[str]:
    return [str(NN_RUN), "--load-by-name", "affine", "--input", "0", "1", "1x4", "/data/x.f32",
            "--print-output", "0", "1", *extra]


def run_example(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), *args], cwd=REPO, capture_output=True,
                          text=True, timeout=300)


# -- docs/examples/embed.py (embedding.md's complete example) -------------------------------------------
def test_embed_example_runs_the_guest_through_wasi_nn(data_dir: Path) -> None:
    result = run_example("embed", f"affine={data_dir / 'affine.wtst'}", str(data_dir), *nn_run_args())
    assert result.returncode == 0, result.stderr
    assert result.stdout == "1 3 5 7\n"  # 2 * [0, 1, 2, 3] + 1, computed by the backend the host chose
    assert "wasinn: wasinn-test model 'affine' (149 B) for cpu -> fake on cpu, score 50" in result.stderr
    assert "wasinn.abi: ABI profile witx" in result.stderr
    assert "embed: the guest still holds 1 graph(s) and 1 context(s)" in result.stderr


def test_embed_example_passes_on_the_guests_exit_status(data_dir: Path) -> None:
    result = run_example("embed", f"affine={data_dir / 'affine.wtst'}", str(data_dir), str(NN_RUN),
                         "--load-by-name", "nope")
    assert result.returncode == 64 + 8, result.stderr  # nn-run exits with 64 + errno; not_found is 8
    assert "load_by_name -> not_found (errno 8): no model named 'nope' is registered" in result.stderr


def test_embed_example_usage() -> None:
    result = run_example("embed")
    assert result.returncode == 2
    assert "NAME=MODEL DIR GUEST.wasm" in result.stderr


def test_embed_example_releases_every_graph_and_context(data_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    embed = load_example("embed")
    status = embed.run("affine", str(data_dir / "affine.wtst"), str(data_dir), str(NN_RUN),
                       nn_run_args("--contexts", "2")[1:])
    assert status == 0
    assert capfd.readouterr().out == "1 3 5 7\n1 3 5 7\n"
    # The guest never unloaded anything: store.close() and host.close() released it all.
    assert not fake.LIVE_GRAPHS and not fake.LIVE_CONTEXTS


# -- docs/examples/direct.py (embedding.md, "Without WebAssembly") ----------------------------------------
def test_direct_example_explains_and_infers(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import wasinn

    direct = load_example("direct")
    with wasinn.WasiNnHost() as host:
        ranking = direct.explain(host, data_dir / "affine.wtst")
        assert ranking.winner is not None and ranking.winner.backend == "fake"
        out = direct.infer(host, data_dir / "affine.wtst", np.arange(4, dtype=np.float32).reshape(1, 4))
    assert out.tolist() == [[1, 3, 5, 7]]
    assert not fake.LIVE_GRAPHS and not fake.LIVE_CONTEXTS  # state.close() released them
    assert capsys.readouterr().out == ("format: wasinn-test\n"
                                       "  fake: 50 (fake runs wasinn-test on cpu)\n"
                                       "winner: fake\n")


def test_direct_example_reports_the_error_a_guest_would_get(data_dir: Path) -> None:
    np.save(data_dir / "wrong.npy", np.zeros((1, 3), np.float32))
    result = run_example("direct", str(data_dir / "affine.wtst"), str(data_dir / "wrong.npy"))
    assert result.returncode == 1
    assert "wasi-nn error invalid_argument: input 0 (x) expects f32[1,4], got f32[1, 3]" in result.stderr
    np.save(data_dir / "x.npy", np.arange(4, dtype=np.float32).reshape(1, 4))
    result = run_example("direct", str(data_dir / "affine.wtst"), str(data_dir / "x.npy"))
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("winner: fake\n[[1. 3. 5. 7.]]\n")


# -- docs/examples/threads.py (embedding.md, "Threads") ------------------------------------------------------
def test_threads_example_shares_one_named_graph(data_dir: Path) -> None:
    result = run_example("threads", "4", f"affine={data_dir / 'affine.wtst'}", str(data_dir),
                         *nn_run_args("--contexts", "2", "--repeat", "3"))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for index in range(4):
        assert f"thread {index}: status 0: 1 3 5 7" in lines
    assert lines.count("1 3 5 7") == 4 * (2 * 3 - 1)  # the rest of each thread's output
    assert result.stderr.count("-> fake on cpu") == 1, "compiled once for the four stores"


# -- index.md --------------------------------------------------------------------------------------------------
def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


def test_home_page_example_is_the_readme_one() -> None:
    # README.md's snippet is executed with the real backends by tests/integration/test_readme.py.
    assert python_blocks(DOCS / "index.md") == python_blocks(REPO / "README.md")


# -- command lines ------------------------------------------------------------------------------------------
# A command is a line of a ```sh block, or a line after a "$ " prompt in a ```text block, that runs
# `wasinn` (possibly `.venv/bin/wasinn`, after VAR=value assignments or `&&`). Other lines of ```text
# blocks are output or synopses. A line marked with a "# placeholder" comment names files that do
# not exist in the repository: it is parsed, but its paths are not checked.
PAGES = sorted(p for p in DOCS.glob("*.md"))
COMMAND = re.compile(r"^(?:[A-Z_]+=(?:'[^']*'|\S+) )*(?:\S*/)?wasinn(?: |$)")


def documented_commands() -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        for lang, block in re.findall(r"```(sh|text)\n(.*?)```", page.read_text(), flags=re.DOTALL):
            for raw in block.splitlines():
                line = raw.strip()
                if lang == "text":
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                for part in line.split(" && "):
                    if COMMAND.match(part.strip()):
                        found.append((page.name, part.strip()))
    return found


COMMANDS = documented_commands()


def test_the_docs_show_commands() -> None:
    assert len(COMMANDS) >= 40, COMMANDS
    assert {page for page, _ in COMMANDS} >= {"cli.md", "quickstart.md", "concepts.md", "index.md"}


def split_command(line: str) -> tuple[list[str], bool]:
    """The arguments after `wasinn`, and whether the line is marked as a placeholder."""
    placeholder = "# placeholder" in line
    tokens = shlex.split(line, comments=True)
    while tokens and re.match(r"^[A-Z_]+=", tokens[0]):
        tokens.pop(0)
    assert tokens and (tokens[0] == "wasinn" or tokens[0].endswith("/wasinn")), line
    return tokens[1:], placeholder


@pytest.mark.parametrize(("page", "line"), COMMANDS, ids=[f"{p}:{i}" for i, (p, _) in enumerate(COMMANDS)])
def test_documented_command_parses(page: str, line: str, monkeypatch: pytest.MonkeyPatch) -> None:
    argv, placeholder = split_command(line)
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{page}: `{line}` does not parse (exit {exc.code})")
    if placeholder:
        return
    # The paths and values must be real too: check them the way `wasinn` does, from the repository root.
    monkeypatch.chdir(REPO)
    if args.command == "run":
        assert Path(args.module).is_file(), f"{page}: {args.module} does not exist"
        for value in args.dir:
            options.parse_dir(value)
        for value in args.env:
            options.parse_env(value)
        for value in args.nn_graph:
            options.parse_nn_graph(value)
        for value in args.nn_preload:
            options.parse_nn_preload(value)
        if args.target:
            options.parse_target(args.target)
        options.parse_nn_remotes(args.nn_remote, args.nn_remote_option)
    elif args.command == "explain":
        remotes = options.parse_nn_remotes(args.nn_remote, args.nn_remote_option)
        if not (len(args.paths) == 1 and args.paths[0] in remotes):  # a remote's NAME is not a file
            resolve_paths(args.paths)
        options.parse_target(args.target)
        if args.encoding:
            options.parse_encoding(args.encoding)


def subcommands() -> dict[str, object]:
    parser = build_parser()
    actions = [a for a in parser._actions if a.dest == "command"]
    return dict(actions[0].choices)  # type: ignore[arg-type]


@pytest.mark.parametrize("command", ["run", "backends", "explain", "hardware"])
def test_every_flag_is_documented(command: str) -> None:
    text = (DOCS / "cli.md").read_text()
    assert f"## `wasinn {command}`" in text
    parser = subcommands()[command]
    flags = {s for action in parser._actions for s in action.option_strings  # type: ignore[attr-defined]
             if s not in ("-h", "--help")}
    missing = sorted(flag for flag in flags if f"`{flag}" not in text)
    assert not missing, f"cli.md does not document `wasinn {command}` {missing}"


# -- compatibility.md ------------------------------------------------------------------------------------------
def markdown_table(text: str, first_header: str, after: str) -> list[list[str]]:
    start = text.index(after)
    lines = text[start:].splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[header:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip().strip("`") for cell in line.strip("|").split("|")])
    assert rows[1][0].startswith("---")
    return [rows[0], *rows[2:]]


@pytest.mark.parametrize(("title", "attribute"), [("**Graph encodings**", "encodings"),
                                                  ("**Execution targets**", "targets"),
                                                  ("**Tensor types**", "tensor_types")])
def test_profile_number_tables_match_the_code(title: str, attribute: str) -> None:
    header, *rows = markdown_table((DOCS / "compatibility.md").read_text(), "Number", title)
    assert header[1:] == list(PROFILES)
    numbers = set().union(*(getattr(p, attribute).keys() for p in PROFILES.values()))
    assert [int(row[0]) for row in rows] == sorted(numbers)
    for row in rows:
        for name, cell in zip(header[1:], row[1:], strict=True):
            value = getattr(PROFILES[name], attribute).get(int(row[0]))
            assert cell == (value.value if value is not None else "–"), (title, name, row[0])


def test_profile_error_table_matches_the_code() -> None:
    header, *rows = markdown_table((DOCS / "compatibility.md").read_text(), "Code", "**Error numbers**")
    assert header[1:] == list(PROFILES)
    assert [row[0] for row in rows] == [code.value for code in ErrorCode]
    for row in rows:
        for name, cell in zip(header[1:], row[1:], strict=True):
            assert int(cell) == PROFILES[name].errno(ErrorCode(row[0])), (name, row[0])


# -- embedding.md's short snippets ---------------------------------------------------------------------------
def test_embedding_page_inline_snippets_run() -> None:
    import logging

    blocks = [b for b in python_blocks(DOCS / "embedding.md") if "--8<--" not in b]
    assert len(blocks) >= 3
    levels = {name: logging.getLogger(name).level for name in ("wasinn", "wasinn.abi")}
    try:
        for block in blocks:
            namespace: dict[str, object] = {}
            exec(compile("import wasinn\n" + block, "embedding.md", "exec"), namespace)
            host = namespace.get("host")
            if host is not None:
                host.close()  # type: ignore[attr-defined]
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)
