"""Hostile guest input to the GGML conventions: metadata values JSON allows but no option can take,
and what the docs' options table promises. Each failure is the right wasi-nn error with a log line,
and the context still works afterwards."""

from __future__ import annotations

import io
import json
import logging
import sys

import pytest
from ggml_native import Native
from test_ggml_backend import GREEDY, PROMPT, open_context, set_bytes

from wasinn.testing.guest import TrampolineGuest

INVALID_ARGUMENT = 1


@pytest.mark.parametrize("raw", [
    b'{"n-predict": NaN}', b'{"n-predict": Infinity}', b'{"n-predict": 1e400}', b'{"seed": -Infinity}',
    b'{"temp": Infinity}', b'{"temp": -Infinity}', b'{"temp": NaN}', b'{"top-p": Infinity}',
    b'{"repeat-penalty": -Infinity}', b'{"presence-penalty": Infinity}',
    b'{"temp": 1' + b"0" * 400 + b"}",  # an integer no float holds
    b'{"ctx-size": 1' + b"0" * 400 + b"}",
    b'{"reverse-prompt": "\\ud800"}',  # a lone surrogate: JSON allows it, UTF-8 cannot encode it
])
def test_unusable_metadata_values_are_invalid_argument(guest: TrampolineGuest, native: Native, raw: bytes,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    ctx = open_context(guest, GREEDY)
    assert set_bytes(guest, ctx, 1, raw) == INVALID_ARGUMENT
    assert "invalid_argument" in caplog.text and "option " in caplog.text
    # the refused metadata changed nothing: the context generates as before
    assert set_bytes(guest, ctx, 0, PROMPT) == 0
    assert guest.compute(ctx).ok
    assert guest.get_output_bytes(ctx, 0)[1] == native.generate(PROMPT, 16).text


def test_unusable_load_config_is_invalid_argument(guest: TrampolineGuest) -> None:
    for config in ('{"n-predict": NaN}', '{"temp": Infinity}', '{"reverse-prompt": "\\udfff"}'):
        assert guest.load_by_name("default", config).errno == INVALID_ARGUMENT


def test_enable_debug_log_logs_timings(guest: TrampolineGuest, caplog: pytest.LogCaptureFixture) -> None:
    # The options table: enable-log and enable-debug-log both log prompt and generation timings.
    caplog.set_level(logging.INFO, "wasinn.ggml")
    ctx = open_context(guest, {**GREEDY, "enable-debug-log": True})
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    assert "prompt of" in caplog.text and "tokens generated in" in caplog.text
    caplog.clear()
    assert set_bytes(guest, ctx, 1, json.dumps({"enable-debug-log": False}).encode()) == 0
    assert guest.compute(ctx).ok
    assert "tokens generated in" not in caplog.text


def test_step_output_index_out_of_range(guest: TrampolineGuest, native: Native) -> None:
    # get_output_single checks its index as get_output does (two outputs: text, metadata).
    ctx = open_context(guest, GREEDY)
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute_single(ctx).ok
    for index in (2, 99):
        assert guest.get_output_bytes(ctx, index)[0].errno == INVALID_ARGUMENT
        assert guest.get_output_single_bytes(ctx, index)[0].errno == INVALID_ARGUMENT
    call, piece = guest.get_output_single_bytes(ctx, 0)
    assert call.ok and piece == native.generate(PROMPT, 16).pieces[0]


class TextOnly(io.StringIO):
    """An embedder's stdout that takes text only (no byte buffer), as io.StringIO does."""


@pytest.mark.parametrize("stdout", ["text", "none", "closed"])
def test_stream_stdout_on_an_embedders_stdout(guest: TrampolineGuest, native: Native, stdout: str,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    # The generation never fails because of where the host's stdout goes.
    expected = native.generate(PROMPT, 16).text
    target: io.StringIO | None = TextOnly() if stdout != "none" else None
    if stdout == "closed":
        assert target is not None
        target.close()
    monkeypatch.setattr(sys, "stdout", target)
    ctx = open_context(guest, {**GREEDY, "stream-stdout": True})
    set_bytes(guest, ctx, 0, PROMPT)
    assert guest.compute(ctx).ok
    assert guest.get_output_bytes(ctx, 0)[1] == expected
    if stdout == "text":
        assert target is not None
        assert target.getvalue() == expected.decode("utf-8", "replace")  # characters split across tokens joined
    else:
        assert caplog.text.count("cannot write to the host's stdout") == 1  # once per generation
