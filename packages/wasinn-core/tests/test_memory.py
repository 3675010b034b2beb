"""The hot-path caches: the store's memory view and the per-context input checks must never go stale."""

from __future__ import annotations

import ctypes
import struct

import numpy as np
import pytest

from wasinn.abi.memory import CachedMemory, GuestMemory
from wasinn.errors import WasiNnError
from wasinn.testing.guest import ERRNO, TrampolineGuest
from wasinn_test_backends import affine_model


def _context(guest: TrampolineGuest) -> int:
    graph = guest.load([affine_model()]).value
    ctx = guest.init_execution_context(graph).value  # type: ignore[arg-type]
    assert ctx is not None
    return ctx


def test_memory_growth_between_calls_is_seen(guest: TrampolineGuest) -> None:
    ctx = _context(guest)
    assert guest.set_input(ctx, 0, np.ones((1, 4), np.float32)).ok
    cached = guest.state.memory
    assert isinstance(cached, CachedMemory)
    before = cached._view
    assert before is not None
    old_size = before.size
    # Place the next tensor beyond the old end of memory: only a refreshed view may accept it.
    guest.heap = old_size
    assert guest.set_input(ctx, 0, np.full((1, 4), 5, np.float32)).ok
    after = cached._view
    assert after is not None and after.size > old_size
    assert guest.compute(ctx).ok
    call, out = guest.get_output(ctx, 0, "<f4", (1, 4))
    assert call.ok
    np.testing.assert_array_equal(out, np.full((1, 4), 11, np.float32))


def test_pointer_past_the_end_is_rejected_with_a_cached_view(guest: TrampolineGuest) -> None:
    ctx = _context(guest)
    assert guest.set_input(ctx, 0, np.ones((1, 4), np.float32)).ok  # the view is cached now
    size = guest.memory_size
    assert guest.call("set_input", ctx, 0, size - 8) == ERRNO["invalid_argument"]  # record straddles the end
    out = guest.alloc(4)
    assert guest.call("get_output", ctx, 0, size - 8, 16, out) == ERRNO["invalid_argument"]


def test_checked_signature_cache_still_rejects_a_changed_tensor(guest: TrampolineGuest) -> None:
    ctx = _context(guest)
    assert guest.set_input(ctx, 0, np.ones((1, 4), np.float32)).ok
    assert guest.set_input(ctx, 0, np.ones((1, 4), np.float32)).ok  # served from the cache
    # Same type and shape, wrong byte length: a different signature, so it is checked, and refused.
    data = np.ones((1, 4), np.float32).tobytes()
    record = guest.tensor_record(data, (1, 4), 1, data_len=12)
    assert guest.call("set_input", ctx, 0, record) == ERRNO["invalid_argument"]
    assert guest.set_input(ctx, 0, np.ones((1, 5), np.float32)).errno == ERRNO["invalid_argument"]
    assert guest.set_input(ctx, 1, np.ones((1, 4), np.float32)).errno == ERRNO["invalid_argument"]


def test_checked_signature_cache_is_bounded(guest: TrampolineGuest) -> None:
    from wasinn.abi.ephemeral import MAX_CHECKED_SIGNATURES

    ctx = _context(guest)
    entry = guest.state.context(ctx)
    for extra in range(MAX_CHECKED_SIGNATURES * 3):
        guest.reset_heap()
        # The dims array may carry any value past the rank the record declares; vary the record's data
        # length instead, which the fake backend rejects only after the core checks pass.
        data = np.ones((1, 4), np.float32).tobytes()
        record = guest.tensor_record(data + bytes(4 * extra), (1, 4 + extra), 1)
        guest.call("set_input", ctx, 0, record)
    assert 0 < len(entry.checked_inputs) <= MAX_CHECKED_SIGNATURES


def test_guest_memory_bounds_and_round_trips() -> None:
    buffer = (ctypes.c_ubyte * 64)()
    memory = GuestMemory(ctypes.addressof(buffer), 64)
    memory.write_u32(60, 0xDEADBEEF, "x")
    assert memory.u32(60, "x") == 0xDEADBEEF
    assert memory.u32_array(56, 2, "x") == (0, 0xDEADBEEF)
    memory.copy_from_array(0, np.arange(4, dtype=">i4"), 16, "x")  # non-native byte order: bytes as they are
    assert bytes(memory.read(0, 4, "x")) == struct.pack(">i", 0)
    assert memory.view(4, 4, "x").tobytes() == struct.pack(">i", 1)
    for ptr, length in ((61, 4), (64, 1), (0xFFFFFFFF, 2), (0, 65)):
        with pytest.raises(WasiNnError) as raised:
            memory.read(ptr, length, "x")
        assert raised.value.code.value == "invalid_argument"
    with pytest.raises(WasiNnError):
        memory.copy_from_array(0, np.zeros(2, np.float32), 16, "x")  # the source is shorter than promised
    assert GuestMemory(0, 0).read(0, 0, "x") == b""
