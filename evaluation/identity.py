"""What makes two evaluations the same evaluation (DESIGN.md §6).

An evaluation is identified by the checkpoint's content, the sampling and scoring
settings, the detector weights, the reference statistics, N, N_ref and the seeds. The
sweep's evaluation stage, ``platform.evaluate`` and the nightly job tag the MLflow run
that received the metrics with ``identity_tag(identity)`` = the checkpoint's step, so
"already evaluated" is one tag lookup wherever it is asked.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

from platform.config.semantics import semantic_config
from platform.hashing import sha256_json

IDENTITY_LENGTH = 32  # hex characters kept of the sha256
TAG_PREFIX = "eval_identity."


def evaluation_identity(
    *,
    checkpoint_id: str,
    eval_settings: Mapping[str, Any],
    detector_sha256: str,
    reference_id: str,
    num_samples: int,
    num_ref: int,
    seeds: Sequence[int],
) -> str:
    """The identity (32 hex chars) of evaluating one checkpoint at one sampling setting.

    Args:
        checkpoint_id: ``platform.checkpoint.verify_checkpoint(path)`` (content sha256).
        eval_settings: ``eval_settings(cfg, steps)``: the semantic eval fields with one
            entry in ``eval.sampling_steps``.
        detector_sha256: sha256 of the Inception weights file used
            (``evaluation.assets.ResolvedAsset.sha256``).
        reference_id: the reference statistics' key
            (``evaluation.reference.reference_key``), or the reference data's content id.
        num_samples: N, generated images scored.
        num_ref: N_ref, reference images (0 when no metric needs them).
        seeds: the sampling seeds (one per repeat).
    """
    payload = {
        "checkpoint": checkpoint_id,
        "settings": dict(eval_settings),
        "detector": detector_sha256,
        "reference": reference_id,
        "n": int(num_samples),
        "n_ref": int(num_ref),
        "seeds": [int(s) for s in seeds],
    }
    return sha256_json(payload)[:IDENTITY_LENGTH]


def eval_settings(cfg: Mapping[str, Any], steps: int) -> dict[str, Any]:
    """``semantic_config(cfg, "eval")`` narrowed to one sampling setting (``steps``).

    ``eval.checkpoints`` (which checkpoints a sweep evaluates) is dropped: an identity
    is already about one checkpoint.
    """
    settings = semantic_config(cfg, "eval")
    section = dict(settings.get("eval", {}))
    section["sampling_steps"] = [int(steps)]
    section.pop("checkpoints", None)
    return {"eval": section}


def identity_tag(identity: str) -> str:
    """The MLflow tag name marking a run as holding this evaluation's metrics."""
    return f"{TAG_PREFIX}{identity}"
