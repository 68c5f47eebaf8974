"""Each stage's code fingerprint covers the code its result comes from, and only that."""

import shutil

import pytest

from platform.orchestration import fingerprint
from platform.orchestration.fingerprint import ENTRY_MODULES, NOT_IN_RESULT, code_fingerprint, module_closure
from tests.conftest import REPO_ROOT


def _closure(stage):
    return set(module_closure(ENTRY_MODULES[stage], NOT_IN_RESULT[stage]))


def test_closures_follow_what_each_stage_computes_with():
    first, ldm, evaluation = _closure("first_stage"), _closure("ldm"), _closure("eval")
    assert {"platform.first_stage.loss", "evaluation.lpips", "platform.data.loader"} <= first
    assert "platform.ldm.diffusion" in ldm and "platform.ldm.diffusion" not in first  # the LDM loss
    assert "platform.ldm.sampling" in evaluation and "platform.ldm.sampling" not in ldm  # grids only
    assert "evaluation.metrics" in evaluation and not {"evaluation.metrics"} & (first | ldm)
    for closure in (first, ldm, evaluation):
        assert not {m for m in closure if m.startswith(("platform.orchestration", "platform.tracking"))}


def test_fingerprint_changes_with_source_libraries_and_detector(tmp_path, monkeypatch):
    base = code_fingerprint("eval", detector_sha256="a" * 64)
    assert base["id"] == code_fingerprint("eval", detector_sha256="a" * 64)["id"]
    assert base["libraries"]["torch"] != "absent" and base["detector"] == "a" * 64
    assert code_fingerprint("eval", detector_sha256="b" * 64)["id"] != base["id"]
    with pytest.raises(ValueError, match="detector"):
        code_fingerprint("eval")
    # A copy of the tree with one changed line of a metric: only that module's hash moves.
    for package in ("platform", "evaluation"):
        shutil.copytree(REPO_ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    metrics = tmp_path / "evaluation" / "metrics.py"
    metrics.write_text(metrics.read_text() + "\n# changed\n")
    monkeypatch.setattr(fingerprint, "REPO_ROOT", tmp_path)
    moved = code_fingerprint("eval", detector_sha256="a" * 64)
    assert moved["id"] != base["id"]
    assert {m for m in base["modules"] if base["modules"][m] != moved["modules"][m]} == {"evaluation.metrics"}
