"""MkDocs hook: tidy reStructuredText leftovers in the API reference's docstrings.

wasinn's docstrings are plain prose written for ``help()`` and IDEs, with a few Sphinx habits that
Markdown does not know: cross-reference roles (``:class:`Hardware```) and ``::`` ending the
paragraph before a literal block. mkdocstrings renders the code and the block correctly; this hook
only drops the role prefix and the doubled colon from the HTML of pages with ``:::`` directives.
"""

from __future__ import annotations

import re
from typing import Any

DIRECTIVE = re.compile(r"^::: ", re.MULTILINE)
ROLE = re.compile(r":(?:class|mod|meth|func|data|attr|exc|obj|const):(?=<code>)")
LITERAL_BLOCK_INTRO = re.compile(r"::</p>")


def on_page_content(html: str, page: Any, **kwargs: Any) -> str:
    if not DIRECTIVE.search(page.markdown or ""):
        return html
    return LITERAL_BLOCK_INTRO.sub(":</p>", ROLE.sub("", html))
