"""Content-addressed stage keys: a stage is the hash of what determines its output.

A key covers the stage's own config section, the keys of the stages it consumes, the
content ids of the datasets it reads and the seed; nothing about where or how it runs
(paths, tracking, cluster, sweep). Equal keys mean one training shared by every trial
and every later sweep that needs it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping, Optional

from platform.config.schema import Regularizer, Stage

IDENTITY = "identity"


def digest(payload: Any) -> str:
    """Short stable hash of a JSON-serialisable value."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_ids(data: Mapping[str, Any]) -> dict[str, str]:
    """Content ids of the ``train`` and ``eval`` shards a ``data`` config section names.

    Raises ``platform.data.manifest.DataError`` (naming the directory and the build
    command) when a split has no manifest.
    """
    from platform.data.manifest import load_manifest

    return {"train": load_manifest(data["train_shards"]).dataset_id,
            "eval": load_manifest(data["eval_shards"]).dataset_id}


def stage_keys(cfg: Mapping[str, Any], dataset_ids: Mapping[str, str]) -> dict[str, Optional[str]]:
    """Keys of a trial's stages from its resolved config (a plain dict).

    Args:
        cfg: the trial's resolved config as a container.
        dataset_ids: content ids of ``train`` and ``eval`` shards (manifest ids).

    Returns:
        ``{"first_stage": key | None, "ldm": key, "eval": key}``; the f = 1 identity has
        no first-stage key because nothing is trained.
    """
    data = {
        "train": dataset_ids["train"],
        "eval": dataset_ids["eval"],
        "resolution": cfg["data"]["resolution"],
        "channels": cfg["data"]["channels"],
    }
    first_stage = None
    if cfg["first_stage"]["regularizer"] != Regularizer.none.value:
        first_stage = digest({"stage": Stage.first_stage.value, "first_stage": cfg["first_stage"],
                              "data": data, "seed": cfg["seed"]})
    ldm_section = {k: v for k, v in cfg["ldm"].items() if k != "tab13"}  # the chosen column is in unet
    ldm = digest({"stage": Stage.ldm.value, "ldm": ldm_section, "first_stage": first_stage or IDENTITY,
                  "f": cfg["first_stage"]["f"], "data": data, "seed": cfg["seed"]})
    reference = dataset_ids["train"] if cfg["eval"]["reference_split"] == "train" else dataset_ids["eval"]
    evaluation = digest({"stage": Stage.eval.value, "eval": cfg["eval"], "ldm": ldm, "reference": reference})
    return {Stage.first_stage.value: first_stage, Stage.ldm.value: ldm, Stage.eval.value: evaluation}
