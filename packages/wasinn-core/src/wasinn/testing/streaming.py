"""The streaming contract (WasmEdge's ``compute_single`` / ``get_output_single`` / ``fini_single``),
checked for any backend: used by :class:`~wasinn.testing.BackendConformance` and callable on its own
by a backend whose models the kit cannot make (an LLM: ``check_streaming_hooks`` after set_input)."""

from __future__ import annotations

import numpy as np

from wasinn.abi.state import StoreState
from wasinn.enums import ErrorCode
from wasinn.errors import WasiNnError

STREAMING_HOOKS = ("compute_single", "get_output_single", "fini_single")
ENDINGS = (ErrorCode.END_OF_SEQUENCE, ErrorCode.CONTEXT_FULL)


def _stream(state: StoreState, context: int, max_steps: int) -> tuple[list[bytes], ErrorCode]:
    steps: list[bytes] = []
    for _ in range(max_steps):
        try:
            state.compute_single(context)
        except WasiNnError as exc:
            assert exc.code in ENDINGS, (f"compute_single failed with {exc.code.value} ({exc.message}) after "
                                         f"{len(steps)} step(s): a stream ends with end_of_sequence or context_full")
            return steps, exc.code
        output = state.get_output_single(context, 0)
        assert isinstance(output, np.ndarray), "get_output_single must return an ndarray"
        steps.append(output.tobytes())
    raise AssertionError(f"the stream did not end within {max_steps} steps (end_of_sequence or context_full)")


def check_streaming_hooks(state: StoreState, context: int, *, max_steps: int = 4096,
                          deterministic: bool = True) -> None:
    """Check the streaming hooks of the backend that owns ``context`` (a handle of ``state``, inputs set).

    A backend implements all three hooks or none. Without them each call is unsupported_operation.
    With them: the stream ends (end_of_sequence or context_full) within ``max_steps``, every step's
    output is readable, the stream stays ended until ``fini_single``, and, for a ``deterministic``
    backend, after ``fini_single`` the same inputs stream the same steps again.
    """
    backend = state.context(context).loaded.backend
    have = [name for name in STREAMING_HOOKS if backend.hook(name) is not None]
    assert len(have) in (0, len(STREAMING_HOOKS)), (
        f"backend {backend.name} implements {', '.join(have)} but not "
        f"{', '.join(n for n in STREAMING_HOOKS if n not in have)}: implement all three streaming hooks or none")
    if not have:
        for name, call in (("compute_single", lambda: state.compute_single(context)),
                           ("get_output_single", lambda: state.get_output_single(context, 0)),
                           ("fini_single", lambda: state.fini_single(context))):
            try:
                call()
            except WasiNnError as exc:
                assert exc.code is ErrorCode.UNSUPPORTED_OPERATION, f"{name}: {exc.code.value}, expected " \
                                                                    f"unsupported_operation"
            else:
                raise AssertionError(f"{name} succeeded on a backend without streaming hooks")
        return
    first = _stream(state, context, max_steps)
    try:
        state.compute_single(context)
    except WasiNnError as exc:
        assert exc.code in ENDINGS, f"compute_single after the end: {exc.code.value}, expected the end again"
    else:
        raise AssertionError("compute_single succeeded after the stream ended (before fini_single)")
    state.fini_single(context)
    again = _stream(state, context, max_steps)
    if deterministic:
        assert again == first, "after fini_single, the same inputs did not stream the same steps"
