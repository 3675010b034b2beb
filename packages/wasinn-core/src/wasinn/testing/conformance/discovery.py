"""Conformance checks of discovery and metadata: the backend is found through its entry point, its
``backend_info`` matches what the test claims and is cheap, importing it is light, its
``detect_format`` never raises nor claims other formats, its ``devices`` hook answers devices."""

from __future__ import annotations

import importlib.metadata

import pytest

from wasinn.enums import ModelFormat
from wasinn.formats import detect_format as builtin_format
from wasinn.hardware import Device
from wasinn.hookspecs import BackendInfo
from wasinn.plugins import ENTRY_POINT_GROUP
from wasinn.testing.conformance.base import ConformanceBase, _names
from wasinn.testing.harness import KitHarness, import_report
from wasinn.testing.values import FOREIGN_SAMPLES, JUNK_BUILDERS

__all__ = ["BUILTIN_FORMATS", "DiscoveryChecks"]

BUILTIN_FORMATS = frozenset({ModelFormat.ONNX, ModelFormat.OPENVINO_IR, ModelFormat.TFLITE, ModelFormat.TORCHSCRIPT,
                             ModelFormat.TORCH_EXPORT, ModelFormat.GGUF, ModelFormat.TENSORFLOW})


class DiscoveryChecks(ConformanceBase):
    """Discovery and metadata: entry point, ``backend_info``, a light import, ``detect_format``, ``devices``."""

    def test_entry_point_discovery(self, kit: KitHarness) -> None:
        points = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
        assert any(ep.name == self.backend for ep in points), (
            f"no entry point named {self.backend!r} in group {ENTRY_POINT_GROUP!r} (found: "
            f"{_names(sorted({ep.name for ep in points}))}); declare it in pyproject.toml under "
            f'[project.entry-points."{ENTRY_POINT_GROUP}"] and reinstall the package')
        backend = kit.backend  # asserts it registered and is available
        assert backend.distribution, f"backend {self.backend!r} was not found through an installed distribution"

    def test_backend_info_matches_claims(self, kit: KitHarness) -> None:
        info = kit.backend.info
        assert isinstance(info, BackendInfo)
        assert isinstance(info.runtime, str) and info.runtime, "BackendInfo.runtime is empty"
        assert info.formats, ("BackendInfo.formats is empty: list every format you read, so that wasinn "
                              "never asks you about the others")
        if info.tensor_types:
            unlisted = [t for t in self.tensor_types if t not in info.tensor_types]
            assert not unlisted, (f"the test claims tensor types {_names(unlisted)} that BackendInfo.tensor_types "
                                  f"({_names(info.tensor_types)}) does not list")
        unlisted_targets = [t for t in self.targets if t not in info.targets]
        assert not unlisted_targets, (f"the test claims targets {_names(unlisted_targets)} that "
                                      f"BackendInfo.targets ({_names(info.targets)}) does not list")
        again = kit.backend.hooks["backend_info"]()
        assert again == info, f"backend_info is not stable: {info!r} then {again!r}"

    def test_import_is_light(self) -> None:
        report = import_report(self.backend, self.heavy_modules)
        assert report["found"], (f"a fresh interpreter does not discover backend {self.backend!r} through the "
                                 f"{ENTRY_POINT_GROUP!r} entry points")
        assert report["unavailable"] is None, \
            f"in a fresh interpreter the backend is unavailable: {report['unavailable']}"
        assert not report["heavy"], (f"discovering the backend and calling backend_info imported "
                                     f"{', '.join(report['heavy'])}: import the runtime lazily, inside the hooks "
                                     f"that need it (load, devices)")
        spent = report.get("backend_info_s", 0.0)
        assert spent <= self.backend_info_budget_s, (f"backend_info took {spent * 1000:.1f} ms (budget "
                                                     f"{self.backend_info_budget_s * 1000:.0f} ms): it must be cheap")

    def test_detect_format_is_safe(self, kit: KitHarness) -> None:
        backend = kit.backend
        assert backend.info is not None
        custom = [f for f in backend.info.formats if f not in BUILTIN_FORMATS]
        hook = backend.hook("detect_format")
        if hook is None:
            assert not custom, (f"BackendInfo.formats lists {_names(custom)}, which wasinn cannot detect by itself: "
                                f"implement detect_format")
            pytest.skip("no detect_format hook (only built-in formats)")
        problems = []
        cases: list[tuple[str, tuple[bytes, ...], ModelFormat | None]] = [
            (f"junk #{i}", builders, None) for i, builders in enumerate(JUNK_BUILDERS)]
        cases += [(f"a {fmt.value} model", builders, fmt) for fmt, builders in FOREIGN_SAMPLES.items()]
        for label, builders, fmt in cases:
            try:
                answer = hook(builders=builders)
            except Exception as exc:
                problems.append(f"detect_format raised {type(exc).__name__} on {label}: {exc} (it must never raise)")
                continue
            if answer is not None and not isinstance(answer, str):
                problems.append(f"detect_format returned {answer!r} on {label}: a str or None")
            elif answer is not None and answer != fmt:
                problems.append(f"detect_format claimed {label} as {answer!r}")
        own = tuple(self._kit_model(self._kit_primary))
        if custom and builtin_format(own) == ModelFormat.UNKNOWN:  # make_model speaks the custom format
            answer = hook(builders=own)
            if answer not in custom:
                problems.append(f"detect_format returned {answer!r} for make_model's bytes, expected one of "
                                f"{_names(custom)}")
        assert not problems, "\n".join(problems)

    def test_devices_hook(self, kit: KitHarness) -> None:
        hook = kit.backend.hook("devices")
        if hook is None:
            pytest.skip("no devices hook (optional)")
        devices = list(hook())
        wrong = [d for d in devices if not isinstance(d, Device)]
        assert not wrong, f"devices returned {wrong!r}: a sequence of wasinn.Device"
