"""Hypothesis profiles and soak sizes of the hostile-guest suite.

Profiles (choose with ``WASINN_FUZZ_PROFILE``):

* ``ci`` (default): derandomized, so CI runs the same examples every time; modest ``max_examples``.
* ``long``: random, many examples (``WASINN_FUZZ_EXAMPLES``, default 5000), no deadline: the by-hand
  run whose numbers are in docs/security.md.

Soak tests run 1,000 cycles by default; ``WASINN_SOAK=1`` makes it the 10,000 of the by-hand run
(``WASINN_SOAK_CYCLES=N`` for any other number).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]

settings.register_profile(
    "wasinn-hostile-ci",
    derandomize=True,
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESS,
)
settings.register_profile(
    "wasinn-hostile-long",
    derandomize=False,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESS,
)

PROFILE = os.environ.get("WASINN_FUZZ_PROFILE", "ci")
if PROFILE not in ("ci", "long"):
    raise ValueError(f"WASINN_FUZZ_PROFILE={PROFILE!r}: use ci or long")


def fuzz_settings(ci_examples: int) -> settings:
    """The settings of one fuzz test: ``ci_examples`` in CI, ``WASINN_FUZZ_EXAMPLES`` (default 5000)
    in the long profile."""
    if PROFILE == "long":
        examples = int(os.environ.get("WASINN_FUZZ_EXAMPLES", "5000"))
        return settings(settings.get_profile("wasinn-hostile-long"), max_examples=examples)
    return settings(settings.get_profile("wasinn-hostile-ci"), max_examples=ci_examples)


def soak_cycles(default: int = 1000) -> int:
    if "WASINN_SOAK_CYCLES" in os.environ:
        return int(os.environ["WASINN_SOAK_CYCLES"])
    return 10_000 if os.environ.get("WASINN_SOAK") == "1" else default
