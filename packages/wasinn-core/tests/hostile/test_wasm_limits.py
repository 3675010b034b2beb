"""Wasm-side limits of ``wasinn run``: ``--fuel``, ``--timeout`` and ``--max-memory``, on small WAT guests.

A guest that runs forever is trapped (exit status 134 and a message naming the cause); a guest that
grows its memory past the cap sees ``memory.grow`` return -1 and can say so with its exit code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from wasinn.cli.main import main
from wasinn.cli.run import TRAP_EXIT_STATUS

PAGE = 65536

LOOP = """(module
  (memory (export "memory") 1)
  (func (export "_start") (loop $forever (br $forever))))
"""

# Forever asking wasi-nn for a model that does not exist: the time goes to the host calls.
NN_LOOP = """(module
  (import "wasi_ephemeral_nn" "load_by_name" (func $load_by_name (param i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "nope")
  (func (export "_start")
    (loop $forever (drop (call $load_by_name (i32.const 0) (i32.const 4) (i32.const 16))) (br $forever))))
"""

# Grows by 4 pages; exits 42 if memory.grow said no (-1), 0 if it worked.
GROW = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (i32.eq (memory.grow (i32.const 4)) (i32.const -1))
      (then (call $exit (i32.const 42))))
    (call $exit (i32.const 0))))
"""

# Grows one page at a time until refused; exits with the number of pages it ended with.
GROW_UNTIL_REFUSED = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more (br_if $more (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    (call $exit (memory.size))))
"""

EXIT_7 = """(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 7))))
"""


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    # main() configures the "wasinn" loggers for a terminal; put them back for the tests after us.
    loggers = [logging.getLogger(name) for name in ("wasinn", "wasinn.abi")]
    saved = [(lg.handlers[:], lg.level, lg.propagate) for lg in loggers]
    yield
    for lg, (handlers, level, propagate) in zip(loggers, saved, strict=True):
        lg.handlers[:], lg.level, lg.propagate = handlers, level, propagate


def guest(tmp_path: Path, name: str, wat: str) -> str:
    path = tmp_path / f"{name}.wat"
    path.write_text(wat)
    return str(path)


def test_fuel_traps_an_infinite_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--fuel", "100000", guest(tmp_path, "loop", LOOP)]) == TRAP_EXIT_STATUS == 134
    assert "fuel" in capsys.readouterr().err


def test_fuel_traps_a_loop_of_wasi_nn_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--fuel", "20000", guest(tmp_path, "nn-loop", NN_LOOP)]) == 134
    assert "fuel" in capsys.readouterr().err


def test_enough_fuel_is_not_a_trap(tmp_path: Path) -> None:
    assert main(["run", "--fuel", "100000", guest(tmp_path, "exit7", EXIT_7)]) == 7


def test_timeout_traps_an_infinite_loop(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert main(["run", "--timeout", "0.3", guest(tmp_path, "loop", LOOP)]) == 134
    elapsed = time.monotonic() - started
    assert 0.25 < elapsed < 10, elapsed
    assert "interrupt" in capsys.readouterr().err


def test_timeout_traps_a_loop_of_wasi_nn_calls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    started = time.monotonic()
    assert main(["run", "--timeout", "0.3", guest(tmp_path, "nn-loop", NN_LOOP)]) == 134
    assert time.monotonic() - started < 10
    assert "interrupt" in capsys.readouterr().err


def test_a_guest_that_finishes_in_time_is_not_interrupted(tmp_path: Path) -> None:
    assert main(["run", "--timeout", "30", guest(tmp_path, "exit7", EXIT_7)]) == 7


def test_max_memory_refuses_growth_past_the_cap(tmp_path: Path) -> None:
    path = guest(tmp_path, "grow", GROW)
    assert main(["run", "--max-memory", str(4 * PAGE), path]) == 42  # 1 + 4 pages > 4: refused
    assert main(["run", "--max-memory", str(5 * PAGE), path]) == 0  # exactly 5 pages: allowed
    assert main(["run", path]) == 0  # no cap


def test_max_memory_is_a_hard_ceiling(tmp_path: Path) -> None:
    assert main(["run", "--max-memory", str(10 * PAGE), guest(tmp_path, "grow-all", GROW_UNTIL_REFUSED)]) == 10


def test_max_memory_below_the_initial_memory_is_a_clear_error(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["run", "--max-memory", str(PAGE // 2), guest(tmp_path, "exit7", EXIT_7)])
    assert rc == 2
    assert "wasinn: error" in capsys.readouterr().err
