"""wasinn.isolation.ChildProbe with real child processes: what each fate of the child becomes, the
cache of models that passed, the policy variable, and the confinement of the process it runs in (a
worker forked from the probe template)."""

from __future__ import annotations

import os
import sys
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import pytest

from wasinn import ErrorCode, WasiNnError
from wasinn.isolation import POLICIES, ChildProbe, signal_name

ENV = "WASINN_TEST_PROBE"

# The child appends a line to the file named by argv[1] (so a test counts the children that ran),
# then does what argv[2] says.
SCRIPT = r"""
import os, signal, sys, time
with open(sys.argv[1], "a") as log:
    log.write("ran\n")
action = sys.argv[2]
if action == "ok":
    sys.exit(0)
if action == "refuse":
    sys.exit(3)
if action == "abort":
    os.kill(os.getpid(), signal.SIGABRT)
if action == "sleep":
    time.sleep(60)
if action == "stdin":
    data = sys.stdin.buffer.read()
    sys.exit(0 if data == b"model bytes" else 3 if data == b"" else 1)
sys.stderr.write("first line\nprobe: ValueError: odd\n")
sys.exit(1)
"""


class LoggingProbe(ChildProbe):
    """The script's log file is its one writable place (its folder, the test's tmp_path)."""

    def run(self, key: Hashable, args: Sequence[str] = (), **options: Any) -> None:
        super().run(key, args, writable=[os.path.dirname(args[0])], **options)


def child(timeout_s: float = 120.0, failure: ErrorCode = ErrorCode.INVALID_ARGUMENT,
          cache_size: int | None = None) -> ChildProbe:
    return LoggingProbe(ENV, SCRIPT, what="Test model", crashes="the test runtime", timeout_s=timeout_s,
                        failure=failure, cache_size=cache_size)


def runs(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_exit_0_and_exit_3_pass_and_are_probed_once(tmp_path: Path) -> None:
    log = tmp_path / "log"
    probe = child()
    for _ in range(3):
        probe.run("fine", [str(log), "ok"])
    assert runs(log) == 1
    # Exit 3 (the runtime refused politely) passes too: the in-process load reports the error.
    for _ in range(2):
        probe.run("refused", [str(log), "refuse"])
    assert runs(log) == 2
    assert list(probe.passed) == ["fine", "refused"]


def test_a_child_killed_by_a_signal_is_invalid_argument_and_not_remembered(tmp_path: Path) -> None:
    log = tmp_path / "log"
    probe = child()
    for expected_runs in (1, 2):  # a crash is not cached: the next load is probed (and refused) again
        with pytest.raises(WasiNnError) as excinfo:
            probe.run("crasher", [str(log), "abort"])
        assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
        assert excinfo.value.message == ("malformed Test model: it crashes the test runtime "
                                         "(SIGABRT in a probe process whose memory cap is 512 MiB, "
                                         "Limits.worker_memory_bytes)")
        assert runs(log) == expected_runs
    assert "crasher" not in probe.passed


def test_a_child_past_its_timeout_is_a_runtime_error(tmp_path: Path) -> None:
    probe = child(timeout_s=0.5)
    with pytest.raises(WasiNnError) as excinfo:
        probe.run("slow", [str(tmp_path / "log"), "sleep"])
    assert excinfo.value.code is ErrorCode.RUNTIME_ERROR
    assert excinfo.value.message == ("the Test model probe did not finish in 0.5 s "
                                     f"(set {ENV}=never to skip probing)")
    assert not probe.passed


def test_another_exit_status_blames_the_model_or_the_probe(tmp_path: Path) -> None:
    args = [str(tmp_path / "log"), "fail"]
    with pytest.raises(WasiNnError) as excinfo:
        child().run("odd", args)
    assert excinfo.value.code is ErrorCode.INVALID_ARGUMENT
    assert excinfo.value.message == ("malformed Test model: the probe process failed "
                                     "(exit 1: probe: ValueError: odd)")  # the last line of stderr
    with pytest.raises(WasiNnError) as excinfo:
        child(failure=ErrorCode.RUNTIME_ERROR).run("odd", args)
    assert excinfo.value.code is ErrorCode.RUNTIME_ERROR
    assert excinfo.value.message == "the Test model probe failed (exit 1: probe: ValueError: odd)"


def test_a_child_that_cannot_start_is_a_runtime_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wasinn.worker.proxy import close_templates

    close_templates()  # the probe template starts again, with this interpreter
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    with pytest.raises(WasiNnError) as excinfo:
        child().run("any", [str(tmp_path / "log"), "ok"])
    assert excinfo.value.code is ErrorCode.RUNTIME_ERROR
    assert excinfo.value.message.startswith("cannot start the Test model probe: ")


def test_the_model_bytes_go_to_the_childs_stdin(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    child().run("bytes", [log, "stdin"], stdin=b"model bytes")  # exit 0 only for exactly these bytes
    with pytest.raises(WasiNnError, match=r"exit 1"):
        child().run("other", [log, "stdin"], stdin=b"other bytes")
    child().run("none", [log, "stdin"])  # no bytes: the child reads an empty stdin, not the host's


def test_the_cache_forgets_the_least_recently_used_key(tmp_path: Path) -> None:
    log = tmp_path / "log"
    probe = child(cache_size=2)
    for key in ("a", "b", "a", "c"):  # the hit on "a" makes "b" the oldest
        probe.run(key, [str(log), "ok"])
    assert list(probe.passed) == ["a", "c"] and runs(log) == 3
    probe.run("b", [str(log), "ok"])
    assert runs(log) == 4


@pytest.mark.parametrize(("value", "chosen"), [
    (None, "untrusted"), ("", "untrusted"), ("untrusted", "untrusted"), ("always", "always"),
    (" Always ", "always"), ("never", "never"), ("sometimes", "untrusted"),
])
def test_the_policy_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, value: str | None,
                                               chosen: str) -> None:
    if value is None:
        monkeypatch.delenv(ENV, raising=False)
    else:
        monkeypatch.setenv(ENV, value)
    probe = child()
    assert probe.policy() == chosen and chosen in POLICIES
    assert probe.wanted(trusted=False) is (chosen != "never")
    assert probe.wanted(trusted=True) is (chosen == "always")


def test_signal_names() -> None:
    assert signal_name(-6) == "SIGABRT" and signal_name(-11) == "SIGSEGV"
    assert signal_name(-200) == "signal 200"


# What a probe's process may do: the script reports each attempt on its stdout-free channel, the log.
CONFINED = r"""
import os, socket, sys
log, forbidden, secret = sys.argv[1], sys.argv[2], sys.argv[3]
def attempt(name, action):
    try:
        action()
        outcome = "done"
    except Exception as exc:
        outcome = type(exc).__name__
    with open(log, "a") as file:
        file.write(f"{name} {outcome}\n")
with open(log, "a") as file:
    file.write(f"parent {os.getppid()}\n")
attempt("write", lambda: open(forbidden, "w").write("x"))
attempt("read", lambda: open(secret).read())
attempt("connect", lambda: socket.create_connection(("127.0.0.1", 9), timeout=2))
attempt("fork", lambda: os.waitpid(os.fork(), 0) if True else None)
attempt("alloc", lambda: bytearray(3 << 30))
sys.exit(0)
"""


def test_a_probe_runs_confined_in_a_worker_of_the_probe_template(tmp_path: Path) -> None:
    from wasinn.worker.proxy import probe_template

    scratch, outside = tmp_path / "scratch", tmp_path / "outside"
    scratch.mkdir()
    outside.mkdir()
    secret = outside / "secret"
    secret.write_text("s3cret")
    log = scratch / "log"
    probe = ChildProbe(ENV, CONFINED, what="Test model", crashes="the test runtime")
    args = [str(log), str(outside / "written"), str(secret)]
    probe.run("confined", args, writable=[str(scratch)])
    lines = dict(line.split(" ", 1) for line in log.read_text().splitlines())
    assert int(lines["parent"]) == probe_template(()).pid != os.getpid(), "forked from the probe template"
    assert lines["write"] == "PermissionError" and not (outside / "written").exists()
    assert lines["read"] == "PermissionError"
    assert lines["connect"] in ("PermissionError", "OSError")
    assert lines["fork"] == "PermissionError"
    assert lines["alloc"] == "MemoryError", "the probe's memory cap"
    # What the caller lets it read, it reads.
    log.unlink()
    probe.run("allowed", args, writable=[str(scratch)], read=[str(secret)])
    assert "read done" in log.read_text()


def test_a_probe_is_a_fork_not_an_interpreter_start() -> None:
    # The modules named in preload (a runtime) are imported once, by the template: each probe, a
    # fork of it, finds them imported. (colorsys: a module nothing else here imports.)
    script = "import sys; sys.exit(0 if 'colorsys' in sys.modules else 1)"
    ChildProbe(ENV, script, what="Test model", crashes="the test runtime", preload=("colorsys",)).run("preloaded")
    with pytest.raises(WasiNnError, match=r"exit 1"):
        ChildProbe(ENV, script, what="Test model", crashes="the test runtime").run("not preloaded")


def test_the_probes_memory_cap_is_the_one_the_caller_gives() -> None:
    # A backend passes model.limits.worker_memory_bytes: the embedder's cap for workers holds for probes.
    script = "import sys; block = bytearray(300 << 20); sys.exit(0)"
    probe = ChildProbe(ENV, script, what="Test model", crashes="the test runtime")
    probe.run("default cap")  # 512 MiB by default: 300 MiB fit
    with pytest.raises(WasiNnError, match=r"exit 1: MemoryError"):
        probe.run("small cap", memory_bytes=64 << 20)
