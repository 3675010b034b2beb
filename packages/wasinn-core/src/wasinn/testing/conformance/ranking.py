"""Conformance checks of scoring: ``can_handle`` scores the backend's own model on every claimed
target (without loading it), declines the targets the test does not claim and the formats the
backend does not read, and ``load`` agrees with it, also with the backend forced."""

from __future__ import annotations

import pytest

from wasinn.enums import ErrorCode, ExecutionTarget
from wasinn.model import ModelDescription
from wasinn.testing.conformance.base import ConformanceBase, _names
from wasinn.testing.harness import KitHarness
from wasinn.testing.values import FOREIGN_SAMPLES, expect_ok

__all__ = ["RankingChecks"]


class RankingChecks(ConformanceBase):
    """Scoring: its own model on each claimed target; unclaimed targets and other formats declined."""

    def test_scores_its_own_model(self, kit: KitHarness, target: ExecutionTarget) -> None:
        dtype = self._kit_primary
        model = self._kit_describe(kit, self._kit_model(dtype), target)
        before = self._kit_live()
        candidate = kit.host.rank(model).candidates[0]
        after = self._kit_live()
        assert before == after, (f"live_objects() went from {before} to {after} while can_handle ran: "
                                 f"scoring must not load the model")
        if not candidate.eligible:
            if target is not ExecutionTarget.CPU and not kit.host.hardware.has(target):
                pytest.skip(f"no {target.value} on this machine ({candidate.reason})")
            pytest.fail(f"can_handle did not score its own {model.describe()} for the claimed target "
                        f"{target.value}: {candidate.reason}")
        score = candidate.score
        assert score is not None and 0 < score <= 100, f"can_handle scored {score}: use 0 < score <= 100"
        assert candidate.reason.strip(), "Score.reason is empty: `wasinn explain` shows it to users"
        driver = kit.guest()
        graph = self._kit_load(driver, dtype, target)
        context = expect_ok(driver.init_execution_context(graph), f"target {target.value}")
        self._kit_run(driver, context, dtype, 1, f"target {target.value}")

    def test_declines_unclaimed_target(self, kit: KitHarness, unclaimed_target: ExecutionTarget) -> None:
        target = unclaimed_target
        builders = self._kit_model(self._kit_primary)
        model = self._kit_describe(kit, builders, target)
        candidate = kit.host.rank(model).candidates[0]
        problems = []
        if candidate.eligible:
            problems.append(f"can_handle scored {candidate.score:g} ({candidate.reason}) for target {target.value}, "
                            f"which the test does not claim (targets: {_names(self.targets)}): return "
                            f"Decline(reason, ErrorCode.UNSUPPORTED_OPERATION), or claim it")
        for label, host in (("load", kit.host), ("load with the backend forced", kit.new_host(forced=True))):
            outcome = kit.guest(host=host).load(builders, self.encoding, target)
            if outcome.code is not ErrorCode.UNSUPPORTED_OPERATION:
                problems.append(f"{label} for target {target.value}: expected unsupported_operation, got "
                                f"{outcome.describe()}{outcome.said()}")
        assert not problems, "\n".join(problems)

    def test_does_not_score_other_formats(self, kit: KitHarness) -> None:
        info = kit.backend.info
        assert info is not None
        foreign = {fmt: b for fmt, b in FOREIGN_SAMPLES.items() if fmt not in info.formats}
        if not foreign:
            pytest.skip("the backend reads every format the kit has samples of")
        problems = []
        for fmt, builders in foreign.items():
            candidate = kit.host.rank(ModelDescription(format=fmt, builders=builders)).candidates[0]
            if candidate.eligible:
                problems.append(f"can_handle scored a {fmt.value} model {candidate.score:g} ({candidate.reason})")
        forced = kit.guest(host=kit.new_host(forced=True))
        for fmt, builders in foreign.items():
            outcome = forced.load(builders, None)
            if outcome.ok:
                problems.append(f"load of a {fmt.value} model with the backend forced succeeded")
        assert not problems, "\n".join(problems)
