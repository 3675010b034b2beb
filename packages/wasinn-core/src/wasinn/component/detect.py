"""Tell a WebAssembly component from a core module by its header.

Both start with ``\\0asm``; the next four bytes are a 16-bit version and a 16-bit *layer*: layer 0 is
a core module (version 1), layer 1 a component (version 0x0d during the component model's
pre-standard phase). The text format is a component when its first form is ``(component``.
"""

from __future__ import annotations

import re
from pathlib import Path

MAGIC = b"\0asm"
_WAT_COMPONENT = re.compile(rb"^(?:\s|;;[^\n]*\n|\(;.*?;\))*\(\s*component\b", re.DOTALL)


def is_component_bytes(header: bytes) -> bool:
    """True for a binary component (or the text of one)."""
    if header[:4] == MAGIC:
        return len(header) >= 8 and int.from_bytes(header[6:8], "little") == 1
    return _WAT_COMPONENT.match(header) is not None


def is_component(path: str | Path) -> bool:
    """Whether the file at ``path`` is a component (False for a core module or anything else)."""
    with open(path, "rb") as f:
        header = f.read(4096)
    return is_component_bytes(header)
