"""The semantic/operational table covers the schema exactly and picks per stage."""

import pytest
from omegaconf import OmegaConf

from platform.config.compose import compose_config
from platform.config.semantics import FIELDS, config_leaves, schema_fields, semantic_config


def test_every_schema_field_is_classified_exactly_once():
    fields = list(schema_fields())
    assert len(fields) == len(set(fields))
    assert sorted(set(fields) - set(FIELDS)) == [], "classify these in platform/config/semantics.py"
    assert sorted(set(FIELDS) - set(fields)) == [], "these are not schema fields any more"


def test_every_leaf_of_every_composed_group_is_a_schema_field():
    for overrides in ([], ["scale=smoke"], ["scale=paper", "first_stage=vq_f8"], ["+experiment=sampler_steps"]):
        cfg = compose_config(overrides)
        assert set(config_leaves(OmegaConf.to_container(cfg, resolve=True))) <= set(FIELDS)


def test_semantic_config_picks_each_stages_own_fields():
    cfg = compose_config(["scale=smoke"])
    first = semantic_config(cfg, "first_stage")
    assert first["first_stage"]["f"] == 4 and first["seed"] == 0
    assert "log_every" not in first["first_stage"]["train"] and "name" not in first["first_stage"]
    assert "ldm" not in first and "eval" not in first and "paths" not in first
    ldm = semantic_config(cfg, "ldm")
    assert ldm["data"]["num_classes"] == 10 and "train_shards" not in ldm["data"]
    assert "tab13" not in ldm["ldm"] and "sample_every" not in ldm["ldm"]
    evaluation = semantic_config(cfg, "eval")
    assert evaluation == {"eval": semantic_config(OmegaConf.to_container(cfg, resolve=True), "eval")["eval"]}
    assert {"batch_size", "num_workers", "inception_weights"}.isdisjoint(evaluation["eval"])
    assert evaluation["eval"]["sampling_steps"] == [10]


def test_operational_changes_leave_every_stage_alone_and_semantic_ones_do_not():
    base = compose_config(["scale=smoke"])
    quiet = compose_config(["scale=smoke", "ldm.train.log_every=7", "eval.num_workers=3", "eval.batch_size=5",
                            "first_stage.name=renamed", "first_stage.train.ckpt_every=5", "ldm.sample_every=3"])
    for stage in ("first_stage", "ldm", "eval"):
        assert semantic_config(quiet, stage) == semantic_config(base, stage)
    louder = compose_config(["scale=smoke", "data.num_classes=7"])
    assert semantic_config(louder, "ldm") != semantic_config(base, "ldm")
    assert semantic_config(louder, "first_stage") == semantic_config(base, "first_stage")


def test_unknown_stage_and_missing_fields():
    with pytest.raises(ValueError, match="unknown stage 'train'"):
        semantic_config({}, "train")
    assert semantic_config({"eval": {"seed": 3}}, "eval") == {"eval": {"seed": 3}}
