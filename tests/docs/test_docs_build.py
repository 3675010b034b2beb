"""The documentation site builds with `mkdocs build --strict` (every warning is an error).

Needs mkdocs, mkdocs-material and mkdocstrings[python]: run it in the docs environment
(`tox -e docs`), where they are installed. Elsewhere it fails on the missing import, on purpose,
rather than being skipped unnoticed.
"""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def page_text(path: Path) -> str:
    """A built page's text, without tags (code is split into highlighting spans)."""
    return html.unescape(re.sub(r"<[^>]+>", "", path.read_text()))


def test_mkdocs_build_strict(tmp_path: Path) -> None:
    import mkdocs  # noqa: F401  (a clear ImportError outside the docs environment)

    site = tmp_path / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(REPO / "mkdocs.yml"),
         "--site-dir", str(site)],
        cwd=REPO, capture_output=True, text=True, timeout=600,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # The examples are included verbatim from docs/examples/ (pymdownx.snippets)...
    embedding = page_text(site / "embedding" / "index.html")
    for example in ("embed", "threads", "direct"):
        code = (REPO / "docs" / "examples" / f"{example}.py").read_text()
        missing = [line for line in code.splitlines() if line.strip() not in embedding]
        assert not missing, f"docs/examples/{example}.py is not on the page: {missing[:3]}"
    assert "--8<--" not in embedding
    # ...and the API reference is generated from the sources (mkdocstrings).
    api = page_text(site / "api" / "index.html")
    for name in ("wasinn.WasiNnHost", "register_model", "max_graphs_per_store", "wasinn.hookspecs", "can_handle"):
        assert name in api, name
    assert ":class:" not in api, "the docstrings hook should drop reST roles"
