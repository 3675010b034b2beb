"""README.md's embedder snippet, exactly as written, doing real inference with the installed backends."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def readme_python_snippet() -> str:
    text = (REPO / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)
    assert len(blocks) == 1, "README.md should have exactly one python snippet: the embedder example"
    return blocks[0]


def test_readme_embedder_snippet_classifies_the_digits() -> None:
    result = subprocess.run([sys.executable, "-c", readme_python_snippet()], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    match = re.search(r"accuracy: ([0-9.]+)%", result.stdout)
    assert match, result.stdout
    assert float(match.group(1)) > 90


def test_readme_commands_are_the_ones_ci_runs() -> None:
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    commands = re.findall(r"```sh\n(.*?)\n```", readme, flags=re.DOTALL)
    assert len(commands) == 2
    for command in commands:
        assert command in ci, f"CI does not run the README command: {command}"
