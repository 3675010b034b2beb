"""The hostile-guest suite: wasinn-core against guests that lie (fake backends only).

The helpers of this folder (hostile_abi, hostile_strategies, hostile_settings) are plain modules on
``sys.path``, shared with the coverage-guided fuzzer in ``fuzz/``.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
