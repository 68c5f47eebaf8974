"""``python -m platform.data``: build, verify, info and --help as a user runs them."""

from __future__ import annotations

import json

import pytest

from platform.data.__main__ import main
from tests.conftest import run_module

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def test_help_everywhere():
    for args in ([], ["build"], ["verify"], ["info"]):
        result = run_module("platform.data", *args, "--help", timeout=60)
        assert result.returncode == 0 and "usage: python -m platform.data" in result.stdout
    assert "fashion-mnist" in run_module("platform.data", "build", "--help", timeout=60).stdout


def test_build_verify_info_and_a_tampered_shard(tmp_path, capsys):
    # In-process calls of the CLI's main(): the same code path as `python -m platform.data`
    # without paying torch's import three more times.
    out = tmp_path / "digits"
    assert main(["build", "digits", "--split", "test", "--out", str(out), "--limit", "40",
                 "--samples-per-shard", "16"]) == 0
    built = capsys.readouterr()
    assert "40 samples, 3 shards" in built.out and "[build] wrote 40 samples" in built.err
    manifest = json.loads((out / "manifest.json").read_text())
    assert [s["count"] for s in manifest["shards"]] == [16, 16, 8] and manifest["options"]["limit"] == 40

    assert main(["verify", str(out)]) == 0
    assert "OK (40 samples in 3 shards" in capsys.readouterr().out

    assert main(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert manifest["dataset_id"] in info and "shard-00002.tar" in info and "0=0, 1=1" in info

    shard = out / "shard-00001.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    assert main(["verify", str(out)]) == 1
    failed = capsys.readouterr().err
    assert "FAILED" in failed and "shard-00001.tar" in failed
    assert "shard-00000.tar" not in failed and "shard-00002.tar" not in failed


def test_missing_inputs_are_clear_errors(tmp_path):
    result = run_module("platform.data", "info", str(tmp_path), timeout=60)
    assert result.returncode == 1 and "no manifest.json" in result.stderr and "platform.data build" in result.stderr
    result = run_module("platform.data", "build", "fashion-mnist", "--path", str(tmp_path), "--out",
                        str(tmp_path / "o"), timeout=60)
    assert result.returncode == 1 and "train-images-idx3-ubyte.gz: missing" in result.stderr
    result = run_module("platform.data", "build", "folder", "--out", str(tmp_path / "o"), timeout=60)
    assert result.returncode == 1 and "needs --path" in result.stderr


@pytest.mark.slow
def test_fashion_mnist_cli_as_the_makefile_calls_it(tmp_path):
    from platform.data.sources import FASHION_MNIST_DIR

    if not FASHION_MNIST_DIR.is_dir():
        pytest.skip("dataset-fashion-mnist not installed")
    out = tmp_path / "fm"
    result = run_module("platform.data", "build", "fashion-mnist", "--split", "test", "--out", str(out), timeout=600)
    assert result.returncode == 0, result.stderr
    assert "10000 samples, 10 shards" in result.stdout
    assert run_module("platform.data", "verify", str(out), timeout=600).returncode == 0


def test_flat_folder_builds_as_an_unconditional_dataset(tmp_path, capsys):
    from PIL import Image

    root = tmp_path / "faces"
    root.mkdir()
    for i in range(5):
        Image.new("RGB", (20, 20), (40 * i, 10, 200)).save(root / f"{i:03d}.png")
    out = tmp_path / "out"
    assert main(["build", "folder", "--path", str(root), "--out", str(out), "--size", "16", "--quiet"]) == 0
    assert "5 samples" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["class_names"] == ["faces"] and manifest["options"]["unconditional"] is True
    assert main(["info", str(out)]) == 0
    assert "none: unconditional (a flat image folder" in capsys.readouterr().out

    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["build", "folder", "--path", str(empty), "--out", str(tmp_path / "o2"), "--quiet"]) == 1
    assert "no images, neither in class sub-folders" in capsys.readouterr().err
