"""``wasi:nn`` for WebAssembly components (the WIT interface), beside the witx ABI in :mod:`wasinn.abi`.

Everything below the ABI is shared with the witx path: named models, ranking, handle tables, limits
and the backends. See ``docs/components.md``.
"""

from wasinn.component.detect import is_component, is_component_bytes
from wasinn.component.interface import VERSION, VERSIONS

__all__ = ["VERSION", "VERSIONS", "is_component", "is_component_bytes"]
