from __future__ import annotations

import logging

import pytest

import wasinn
from wasinn import Decline, ErrorCode, ExecutionTarget, Score, WasiNnError, hookimpl
from wasinn.ranking import choose
from wasinn_test_backends import FORMAT, affine_model
from wasinn_test_backends.fake import FakeBackend

GPU_MACHINE = wasinn.Hardware(
    cpu=wasinn.Cpu("x86_64", "amd", "test", 2, frozenset()),
    accelerators=(wasinn.Device(ExecutionTarget.GPU, "Pretend GPU", "nvidia", "test"),),
)
CPU_MACHINE = wasinn.Hardware(cpu=wasinn.Cpu("x86_64", "amd", "test", 2, frozenset()))


def describe(host: wasinn.WasiNnHost, target: ExecutionTarget = ExecutionTarget.CPU) -> wasinn.ModelDescription:
    return host.describe_model([affine_model()], target=target)


def test_highest_score_wins_and_runners_up_are_listed() -> None:
    host = wasinn.WasiNnHost(hardware=CPU_MACHINE)
    ranking = host.rank(describe(host))
    assert ranking.winner is not None and ranking.winner.backend == "fake"
    assert [c.backend for c in ranking.runners_up] == ["fakegpu"]
    assert ranking.model.format == FORMAT
    unavailable = {c.backend: c.reason for c in ranking.candidates if not c.eligible}
    assert unavailable["broken"].startswith("unavailable")


def test_hardware_changes_the_winner() -> None:
    host = wasinn.WasiNnHost(hardware=GPU_MACHINE)
    ranking = host.rank(describe(host, ExecutionTarget.GPU))
    assert ranking.winner is not None and ranking.winner.backend == "fakegpu"
    assert ranking.winner.device == "gpu:0"
    assert ranking.to_dict()["winner"] == "fakegpu"


def test_unmet_target_is_unsupported_operation_never_a_cpu_run() -> None:
    host = wasinn.WasiNnHost(hardware=CPU_MACHINE)
    ranking = host.rank(describe(host, ExecutionTarget.GPU))
    assert ranking.winner is None
    with pytest.raises(WasiNnError) as info:
        choose(ranking)
    assert info.value.code is ErrorCode.UNSUPPORTED_OPERATION
    assert "no GPU" in info.value.message


def test_forced_backend_is_the_only_candidate() -> None:
    host = wasinn.WasiNnHost(hardware=CPU_MACHINE, backend="fakegpu")
    ranking = host.rank(describe(host))
    assert [c.backend for c in ranking.candidates] == ["fakegpu"]
    assert ranking.winner is not None and ranking.forced == "fakegpu"


def test_forced_backend_that_declines_gives_its_decline_code() -> None:
    host = wasinn.WasiNnHost(hardware=CPU_MACHINE, backend="fakegpu")
    with pytest.raises(WasiNnError) as info:
        choose(host.rank(describe(host, ExecutionTarget.GPU)))
    assert info.value.code is ErrorCode.UNSUPPORTED_OPERATION
    assert "fakegpu cannot serve" in info.value.message


def test_forcing_an_unknown_backend_is_a_configuration_error() -> None:
    with pytest.raises(wasinn.ConfigurationError, match="no such backend"):
        wasinn.WasiNnHost(backend="nonexistent")


class Twin(FakeBackend):
    """Same score as ``fake``: only the preference list or the name can break the tie."""


@pytest.mark.usefixtures("no_allow_list")
def test_ties_break_by_preference_then_name() -> None:
    backends = {"zeta": Twin(), "alpha": Twin()}
    host = wasinn.WasiNnHost(backends=backends, entry_points=False, hardware=CPU_MACHINE)
    assert host.rank(describe(host)).winner.backend == "alpha"  # type: ignore[union-attr]
    preferring = wasinn.WasiNnHost(backends=backends, entry_points=False, hardware=CPU_MACHINE,
                                   prefer={FORMAT: ["zeta"]})
    assert preferring.rank(describe(preferring)).winner.backend == "zeta"  # type: ignore[union-attr]
    star = wasinn.WasiNnHost(backends=backends, entry_points=False, hardware=CPU_MACHINE, prefer={"*": ["zeta"]})
    assert star.rank(describe(star)).winner.backend == "zeta"  # type: ignore[union-attr]


class Raising(FakeBackend):
    @hookimpl
    def can_handle(self, model: wasinn.ModelDescription, hw: wasinn.Hardware) -> Score | Decline | None:
        raise RuntimeError("scoring exploded")


@pytest.mark.usefixtures("no_allow_list")
def test_a_raising_can_handle_is_a_reasoned_refusal(caplog: pytest.LogCaptureFixture) -> None:
    host = wasinn.WasiNnHost(backends={"raising": Raising(), "ok": FakeBackend()}, entry_points=False,
                             hardware=CPU_MACHINE)
    ranking = host.rank(describe(host))
    assert ranking.winner is not None and ranking.winner.backend == "ok"
    refusal = next(c for c in ranking.candidates if c.backend == "raising")
    assert "scoring exploded" in refusal.reason
    assert "scoring exploded" in caplog.text


@pytest.mark.usefixtures("no_allow_list")
def test_no_backend_for_the_format_is_invalid_encoding() -> None:
    host = wasinn.WasiNnHost(backends={}, entry_points=False)
    digits = (__import__("core_paths").REPO / "demo" / "models" / "digits.tflite").read_bytes()
    model = host.describe_model([digits])
    with pytest.raises(WasiNnError) as info:
        choose(host.rank(model))
    assert info.value.code is ErrorCode.INVALID_ENCODING
    assert "no backends installed" in info.value.message


def test_every_choice_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="wasinn")
    host = wasinn.WasiNnHost(hardware=CPU_MACHINE)
    host.load_description(describe(host))
    line = next(r.getMessage() for r in caplog.records if "->" in r.getMessage())
    assert "fake" in line and "score 50" in line and "runners-up: fakegpu (10)" in line
