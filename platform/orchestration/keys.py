"""Content-addressed stage keys: a stage is the hash of what determines its result.

A key's payload holds the stage's semantic config fields (``platform.config.semantics``),
the keys of the stages it consumes, the content ids of the datasets it reads and its
code fingerprint (``platform.orchestration.fingerprint``); nothing about where or how it
runs (paths, tracking, cluster, cadence, worker counts). Equal keys mean one result shared
by every trial and every later sweep that needs it; a code change re-runs what it touches.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

from platform.config.schema import Regularizer, Stage
from platform.config.semantics import semantic_config
from platform.hashing import sha256_json

IDENTITY = "identity"
KEY_LENGTH = 16
FIRST_STAGE, LDM, EVAL = Stage.first_stage.value, Stage.ldm.value, Stage.eval.value


def digest(payload: Any) -> str:
    """Short stable hash of a JSON-serialisable value."""
    return sha256_json(payload)[:KEY_LENGTH]


def dataset_ids(data: Mapping[str, Any]) -> dict[str, str]:
    """Content ids of the ``train`` and ``eval`` shards a ``data`` config section names.

    Raises ``platform.data.manifest.DataError`` (naming the directory and the build
    command) when a split has no manifest.
    """
    from platform.data.manifest import load_manifest

    return {"train": load_manifest(data["train_shards"]).dataset_id,
            "eval": load_manifest(data["eval_shards"]).dataset_id}


def stage_payloads(cfg: Mapping[str, Any], dataset_ids: Mapping[str, str],
                   fingerprints: Mapping[str, str]) -> dict[str, Optional[dict[str, Any]]]:
    """What each stage's key hashes, from a trial's resolved config (a plain dict).

    Args:
        cfg: the trial's resolved config as a container.
        dataset_ids: content ids of ``train`` and ``eval`` shards (manifest ids).
        fingerprints: stage -> code fingerprint id (``code_fingerprint(stage)["id"]``);
            a stage without one gets no payload (None), nor do the stages after it.

    Returns:
        ``{"first_stage": payload | None, "ldm": ..., "eval": ...}``; the f = 1 identity
        has no first-stage payload because nothing is trained.
    """
    data = {"train": dataset_ids["train"], "eval": dataset_ids["eval"]}
    payloads: dict[str, Optional[dict[str, Any]]] = dict.fromkeys((FIRST_STAGE, LDM, EVAL))
    first_stage: Optional[str] = IDENTITY
    if cfg["first_stage"]["regularizer"] != Regularizer.none.value:
        if FIRST_STAGE not in fingerprints:
            return payloads
        payloads[FIRST_STAGE] = {"stage": FIRST_STAGE, "config": semantic_config(cfg, FIRST_STAGE),
                                 "data": data, "code": fingerprints[FIRST_STAGE]}
        first_stage = digest(payloads[FIRST_STAGE])
    if LDM not in fingerprints:
        return payloads
    payloads[LDM] = {"stage": LDM, "config": semantic_config(cfg, LDM), "first_stage": first_stage,
                     "data": data, "code": fingerprints[LDM]}
    if EVAL not in fingerprints:
        return payloads
    reference = dataset_ids["train"] if cfg["eval"]["reference_split"] == "train" else dataset_ids["eval"]
    payloads[EVAL] = {"stage": EVAL, "config": semantic_config(cfg, EVAL), "ldm": digest(payloads[LDM]),
                      "data": {"reference": reference, "conditions": dataset_ids["eval"]},
                      "code": fingerprints[EVAL]}
    return payloads


def stage_keys(cfg: Mapping[str, Any], dataset_ids: Mapping[str, str],
               fingerprints: Mapping[str, str]) -> dict[str, Optional[str]]:
    """``stage -> key`` (None where ``stage_payloads`` gives no payload)."""
    return {stage: digest(payload) if payload is not None else None
            for stage, payload in stage_payloads(cfg, dataset_ids, fingerprints).items()}


@dataclass
class TrialKeys:
    """A trial's keys with everything needed to explain them (stored in each record)."""

    keys: dict[str, Optional[str]]
    payloads: dict[str, Optional[dict[str, Any]]]
    fingerprints: dict[str, dict[str, Any]] = field(default_factory=dict)
    dataset_ids: dict[str, str] = field(default_factory=dict)
    detector: Optional[dict[str, str]] = None  # {"sha256", "source", "path"} when evaluating


@functools.lru_cache(maxsize=8)
def _detector(explicit: Optional[str]) -> dict[str, str]:
    from evaluation.assets import resolve_inception

    asset = resolve_inception(explicit)
    return {"sha256": asset.sha256, "source": asset.source, "path": str(asset.path)}


@functools.lru_cache(maxsize=16)
def _fingerprint(stage: str, detector_sha256: Optional[str]) -> dict[str, Any]:
    from platform.orchestration.fingerprint import code_fingerprint

    return code_fingerprint(stage, detector_sha256=detector_sha256)


def trial_keys(cfg: Mapping[str, Any], stages: Sequence[str]) -> TrialKeys:
    """Keys of ``stages`` (and the stages they consume) for a resolved config.

    Reads the data manifests and, when ``eval`` is among ``stages``, resolves the
    Inception weights (their sha256 enters the evaluation fingerprint).

    Raises:
        platform.data.manifest.DataError: a split has no manifest.
        evaluation.assets.AssetUnavailable: evaluation needs weights that cannot be found.
    """
    order = [FIRST_STAGE, LDM, EVAL]
    last = max(order.index(stage) for stage in stages)
    ids = dataset_ids(cfg["data"])
    detector = _detector(cfg["eval"]["inception_weights"]) if last == order.index(EVAL) else None
    fingerprints = {stage: _fingerprint(stage, detector["sha256"] if stage == EVAL else None)
                    for stage in order[:last + 1]}
    payloads = stage_payloads(cfg, ids, {stage: fp["id"] for stage, fp in fingerprints.items()})
    keys = {stage: digest(payload) if payload is not None else None for stage, payload in payloads.items()}
    return TrialKeys(keys, payloads, fingerprints, ids, detector)
