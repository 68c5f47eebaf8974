"""build: round trip to the source pixels, byte-identical rebuilds, atomic writes, folder sources."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from platform.data.build import build_dataset
from platform.data.imaging import fit_image
from platform.data.loader import make_loader, read_range
from platform.data.manifest import DataError, load_manifest
from platform.data.shards import ShardWriter
from platform.data.sources import digits, fashion_mnist, image_folder, lfw_subset

# torchvision 0.29 warns on every PNG decode (see platform/data/reader.py).
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


def _all_samples(directory: Path) -> dict[str, tuple[np.ndarray, int, str]]:
    out = {}
    for batch in make_loader(directory, batch_size=50, shuffle=False):
        pixels = ((batch["image"] + 1) * 127.5).round().byte()  # [-1, 1] back to uint8, exactly
        for key, image, label, caption in zip(batch["key"], pixels, batch["label"], batch["caption"]):
            out[key] = (image.permute(1, 2, 0).numpy(), int(label), caption)
    return out


def test_fashion_round_trip_is_pixel_identical(fashion_shards):
    train_dir, _ = fashion_shards
    source = fashion_mnist("train")
    samples = _all_samples(train_dir)
    assert len(samples) == 512
    for key, (image, label, caption) in samples.items():
        pixels, want_label, want_caption = source.load(int(key))
        # 28x28 padded to 32x32: the central crop is the source image, grey in all three channels.
        assert np.array_equal(image[2:30, 2:30, 0], pixels) and np.array_equal(image[..., 0], image[..., 2])
        assert image[:2].max() == 0 and image[30:].max() == 0
        assert (label, caption) == (want_label, want_caption)
    manifest = load_manifest(train_dir)
    assert manifest.class_names[7] == "Sneaker" and manifest.image_size == 32 and manifest.mode == "RGB"
    assert {c for _, l, c in samples.values() if l == 7} == {"a photo of a sneaker"}


def test_digits_round_trip_and_read_range(tiny_shards):
    train_dir, test_dir = tiny_shards
    source = digits("train")
    samples = _all_samples(train_dir)
    assert len(samples) == 256 and load_manifest(test_dir).num_samples == 64
    for key, (image, label, caption) in samples.items():
        pixels, want_label, want_caption = source.load(int(key))
        assert np.array_equal(image, fit_image(pixels, 32, "resize"))
        assert np.array_equal(image[::4, ::4, 1], pixels)  # nearest x4 keeps every source pixel
        assert (label, caption) == (want_label, f"a photo of the digit {want_label}")
    # read_range follows manifest order, across a shard boundary (64 samples per shard).
    ordered = list(samples)  # unshuffled loader order = manifest order
    images, labels = read_range(train_dir, 60, 70)
    assert images.dtype == torch.uint8 and images.shape == (10, 3, 32, 32)
    for i, (image, label) in enumerate(zip(images, labels)):
        want_image, want_label, _ = samples[ordered[60 + i]]
        assert np.array_equal(image.permute(1, 2, 0).numpy(), want_image) and int(label) == want_label


def test_rebuild_is_byte_identical_and_seed_changes_order(tmp_path):
    a = build_dataset(lfw_subset("train"), tmp_path / "a", samples_per_shard=50, progress=False)
    b = build_dataset(lfw_subset("train"), tmp_path / "b", samples_per_shard=50, progress=False)
    assert a.dataset_id == b.dataset_id and a.num_samples == 160
    for shard in a.shards:
        assert (tmp_path / "a" / shard.name).read_bytes() == (tmp_path / "b" / shard.name).read_bytes()
    assert (tmp_path / "a" / "manifest.json").read_bytes() == (tmp_path / "b" / "manifest.json").read_bytes()
    c = build_dataset(lfw_subset("train"), tmp_path / "c", samples_per_shard=50, seed=1, progress=False)
    assert c.dataset_id != a.dataset_id
    assert c.options["seed"] == 1 and a.options == {"size": 32, "fit": "pad", "samples_per_shard": 50,
                                                    "seed": 0, "shuffle": True, "limit": None}


def test_interrupted_build_leaves_no_complete_looking_shard(tmp_path):
    out = tmp_path / "out"
    build_dataset(digits("test"), out, samples_per_shard=16, limit=32, progress=False)  # an earlier build
    with pytest.raises(KeyboardInterrupt):
        with ShardWriter(out, name="x", split="train", image_size=32, samples_per_shard=10) as writer:
            for i in range(15):
                writer.write({"__key__": f"{i:04d}", "png": b"p", "cls": 0, "txt": "t"})
            raise KeyboardInterrupt
    assert not (out / "manifest.json").exists()  # the old manifest went first: no stale index
    assert not list(out.glob("*.tmp"))  # the shard in progress was dropped
    with pytest.raises(DataError, match="no manifest.json.*python -m platform.data build"):
        load_manifest(out)


def test_interrupted_rebuild_leaves_the_previous_dataset_intact(tmp_path):
    import dataclasses

    from platform.data.verify import verify_shards

    out = tmp_path / "out"
    before = build_dataset(digits("test"), out, samples_per_shard=16, limit=32, progress=False)
    good = digits("test")

    def load(i):
        if i == 20:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the rebuild
        return good.load(i)

    with pytest.raises(KeyboardInterrupt):
        build_dataset(dataclasses.replace(good, load=load), out, samples_per_shard=8, limit=40, shuffle=False,
                      progress=False)
    assert load_manifest(out) == before  # the old index and every old shard are still there
    assert verify_shards(out) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging directory left behind
    after = build_dataset(digits("test"), out, samples_per_shard=8, limit=40, progress=False)
    assert load_manifest(out) == after and after.dataset_id != before.dataset_id
    assert sorted(p.name for p in out.glob("shard-*")) == [s.name for s in after.shards]


def test_writer_rejects_bad_samples(tmp_path):
    writer = ShardWriter(tmp_path, name="x", split="train", image_size=4, keys=("cls", "npy"), mode="latent")
    with pytest.raises(DataError, match="without dots"):
        writer.write({"__key__": "a.b", "cls": 0, "npy": b""})
    with pytest.raises(DataError, match=r"extensions \['cls'\]"):
        writer.write({"__key__": "a", "cls": 0})
    writer.write({"__key__": "a", "cls": 0, "npy": b"\x00"})
    manifest = writer.close()
    assert manifest.keys == ("cls", "npy") and manifest.num_samples == 1 and manifest.mode == "latent"


def test_image_folder_labels_captions_and_bad_image(tmp_path):
    root = tmp_path / "photos"
    rng = np.random.default_rng(0)
    pixels = {}
    for cls in ("cat", "owl"):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            image = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(image).save(root / cls / f"{i}.png")
            pixels[f"{cls}/{i}.png"] = image
    captions = tmp_path / "captions.jsonl"
    captions.write_text(json.dumps({"file_name": "owl/1.png", "caption": "an owl at night"}) + "\n")
    source = image_folder(root, "train", captions)
    assert source.class_names == ("cat", "owl") and source.length == 6
    manifest = build_dataset(source, tmp_path / "out", size=16, fit="crop", progress=False, shuffle=False)
    samples = _all_samples(tmp_path / "out")
    assert [samples[k][1] for k in sorted(samples)] == [0, 0, 0, 1, 1, 1]
    assert samples["00000004"][2] == "an owl at night" and samples["00000000"][2] == "a photo of a cat"
    assert np.array_equal(samples["00000000"][0], fit_image(pixels["cat/0.png"], 16, "crop"))
    assert manifest.num_samples == 6
    (root / "owl" / "2.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    with pytest.raises(DataError, match=r"owl/2.png: cannot decode image"):
        build_dataset(image_folder(root, "train"), tmp_path / "bad", size=16, progress=False)
