"""Redaction: whole-word secret keys, URL userinfo and query secrets, on the real config."""

import yaml
from omegaconf import OmegaConf

from platform.config.compose import compose_config
from platform.redaction import REDACTED, is_secret_key, redact, redact_override, redact_text
from platform.tracking import flatten_config

SECRETS = ("hunter2", "s3cr3t", "SIGVALUE", "tok123")


def test_secret_keys_are_judged_on_whole_words():
    for key in ("tracking.token", "db.password", "hf_token", "aws_secret_access_key", "apiKey", "x.api-key",
                "credentials.user"):
        assert is_secret_key(key), key
    for key in ("ldm.cond.max_text_tokens", "ldm.cond.text_encoder", "tokenizer", "eval.keep_last",
                "stage_key", "passes"):
        assert not is_secret_key(key), key


def test_urls_lose_userinfo_and_secret_query_values_only():
    assert redact_text("http://alice:hunter2@mlflow.example:5000/api") == f"http://{REDACTED}@mlflow.example:5000/api"
    assert (redact_text("s3://b/k.tar?X-Amz-Signature=SIGVALUE&X-Amz-Expires=60&mode=ro")
            == f"s3://b/k.tar?X-Amz-Signature={REDACTED}&X-Amz-Expires=60&mode=ro")
    assert redact_text("https://h/x?sig=SIGVALUE&access_token=tok123") == f"https://h/x?sig={REDACTED}&access_token={REDACTED}"
    for harmless in ("sqlite:////tmp/runs/mlflow.db", "http://host/path@v2", "user@example.com", "a=b"):
        assert redact_text(harmless) == harmless


def test_overrides_are_redacted_by_key_and_url():
    assert redact_override("tracking.token=tok123") == f"tracking.token={REDACTED}"
    assert redact_override("+db.password=hunter2") == f"+db.password={REDACTED}"
    assert redact_override("tracking.uri=http://a:hunter2@h:1") == f"tracking.uri=http://{REDACTED}@h:1"
    assert redact_override("ldm.cond.max_text_tokens=64") == "ldm.cond.max_text_tokens=64"
    assert redact_override("ldm.train.lr=1e-4,2e-4") == "ldm.train.lr=1e-4,2e-4"


def _plain_flatten(tree, prefix=""):
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_plain_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def test_real_composed_config_keeps_every_plain_value_and_hides_every_secret():
    plain = OmegaConf.to_container(compose_config(["+experiment=downsample_factor", "scale=smoke"]), resolve=True)
    # Nothing in the shipped config is a secret: redaction must not change a single param.
    assert flatten_config(plain) == _plain_flatten(plain)
    assert flatten_config(plain)["ldm.cond.max_text_tokens"] == str(plain["ldm"]["cond"]["max_text_tokens"])
    assert redact(plain) == plain

    cfg = compose_config(["+experiment=downsample_factor", "scale=smoke",
                          "tracking.uri='http://alice:hunter2@mlflow.example:5000/?access_token=tok123'",
                          "cluster.address='ray://bob:s3cr3t@head:10001'", "+tracking.token=tok123",
                          "data.train_shards='https://h/shards?sig=SIGVALUE'"])
    tree = OmegaConf.to_container(cfg, resolve=True)
    params = flatten_config(tree)
    artifact = yaml.safe_dump(redact(tree), sort_keys=False)
    for secret in SECRETS:
        assert secret not in str(params) and secret not in artifact, secret
    assert params["tracking.uri"] == f"http://{REDACTED}@mlflow.example:5000/?access_token={REDACTED}"
    assert params["tracking.token"] == REDACTED
    assert params["data.train_shards"] == f"https://h/shards?sig={REDACTED}"
    assert params["ldm.cond.max_text_tokens"] == str(tree["ldm"]["cond"]["max_text_tokens"])
