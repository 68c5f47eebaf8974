"""Bad data: verify names the shard (and key); the loader raises or skips-and-counts."""

from __future__ import annotations

import io
import shutil
import tarfile

import numpy as np
import pytest

from platform.data.imaging import encode_png
from platform.data.loader import make_loader, read_range
from platform.data.reader import ShardError
from platform.data.shards import ShardWriter
from platform.data.verify import verify_shards

pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding capabilities:DeprecationWarning")


@pytest.fixture
def shards_copy(tiny_shards, tmp_path):
    """A private copy of the tiny train shards (4 shards x 64 samples) to damage."""
    target = tmp_path / "train"
    shutil.copytree(tiny_shards[0], target)
    return target


def _broken_png_set(tmp_path):
    """16 samples in 2 shards; sample 00000011 (shard-00001) has a truncated PNG."""
    rng = np.random.default_rng(0)
    with ShardWriter(tmp_path / "bad_png", name="t", split="train", image_size=8, class_names=("a", "b"),
                     samples_per_shard=8) as writer:
        for i in range(16):
            png = encode_png(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
            writer.write({"__key__": f"{i:08d}", "png": png[: len(png) // 2] if i == 11 else png,
                          "cls": i % 2, "txt": "x"})
    return tmp_path / "bad_png"


def test_verify_passes_a_sound_directory(shards_copy):
    assert verify_shards(shards_copy) == []


def test_one_tampered_byte_fails_verify_naming_the_shard(shards_copy):
    shard = shards_copy / "shard-00002.tar"
    data = bytearray(shard.read_bytes())
    data[5000] ^= 0x01  # inside some member's data
    shard.write_bytes(bytes(data))
    problems = verify_shards(shards_copy, decode=False)
    assert problems and all("shard-00002.tar" in line for line in problems)
    assert "sha256" in problems[0]


def test_truncated_shard_raises_or_is_counted(shards_copy):
    shard = shards_copy / "shard-00001.tar"
    shard.write_bytes(shard.read_bytes()[:40_000])  # cut inside sample 13 of 64
    problems = verify_shards(shards_copy)
    assert all(line.startswith(f"shard {shard}:") for line in problems)
    assert "corrupt or truncated tar at sample" in problems[1] and "without an end-of-archive marker" in problems[1]
    assert "12 samples, manifest says 64; the file is truncated" in problems[2]
    with pytest.raises(ShardError, match=r"shard-00001\.tar: corrupt or truncated tar at sample '\d{8}'"):
        list(make_loader(shards_copy, batch_size=16, shuffle=False))
    loader = make_loader(shards_copy, batch_size=16, num_workers=2, on_error="skip", seed=1)
    keys = [k for batch in loader for k in batch["key"]]  # warnings come from worker processes
    assert loader.skipped > 0 and len(keys) + loader.skipped == 256 and len(set(keys)) == len(keys)
    with pytest.raises(ShardError, match=r"shard-00001\.tar"):
        read_range(shards_copy, 60, 100)


def test_undecodable_png_raises_or_is_counted(tmp_path):
    directory = _broken_png_set(tmp_path)
    problems = verify_shards(directory)
    assert len(problems) == 1 and "shard-00001.tar" in problems[0] and "'00000011'" in problems[0]
    for workers in (0, 2):  # the error crosses from a DataLoader worker with its type and message
        with pytest.raises(ShardError, match=r"shard-00001\.tar, sample '00000011': undecodable PNG"):
            list(make_loader(directory, batch_size=4, shuffle=False, num_workers=workers))
    loader = make_loader(directory, batch_size=4, shuffle=False, on_error="skip")
    with pytest.warns(RuntimeWarning, match=r"shard-00001\.tar, sample '00000011'"):
        keys = [k for batch in loader for k in batch["key"]]
    assert loader.skipped == 1 and len(keys) == 15 and "00000011" not in keys


def test_missing_key_and_corrupt_header_are_named(tmp_path):
    directory = _broken_png_set(tmp_path)
    # Rewrite shard 0 without the caption of sample 00000003 (manifest hash now stale too).
    shard = directory / "shard-00000.tar"
    out = io.BytesIO()
    with tarfile.open(shard) as src, tarfile.open(fileobj=out, mode="w") as dst:
        for member in src.getmembers():
            if member.name != "00000003.txt":
                dst.addfile(member, src.extractfile(member))
    shard.write_bytes(out.getvalue())
    problems = verify_shards(directory)
    assert any("shard-00000.tar, sample '00000003': missing txt" in line for line in problems)
    with pytest.raises(ShardError, match=r"sample '00000003': missing 00000003\.txt"):
        list(make_loader(directory, batch_size=4, shuffle=False))
    # Garbage over the first tar header: the tar itself is unreadable.
    data = bytearray(shard.read_bytes())
    data[0:512] = b"\xff" * 512
    shard.write_bytes(bytes(data))
    assert any("shard-00000.tar: corrupt or truncated tar before the first sample (header checksum mismatch" in line
               for line in verify_shards(directory))
