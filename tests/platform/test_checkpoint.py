"""Checkpoints are complete exactly when their digest exists, and verify against it."""

import json

import pytest
import torch

from platform.checkpoint import (
    DIGEST_FILE,
    TENSORS_FILE,
    CheckpointError,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
    verify_checkpoint,
)


def _save(root, step=1, value=1.0, **kwargs):
    return save_checkpoint(root, step, {"model": {"w": torch.full((3,), value)}}, {"note": "x"}, **kwargs)


def test_digest_is_written_and_content_id_is_stable(tmp_path):
    path = _save(tmp_path / "a")
    files = json.loads((path / DIGEST_FILE).read_text())["files"]
    assert sorted(files) == ["meta.json", TENSORS_FILE]
    content_id = verify_checkpoint(path)
    assert len(content_id) == 64 and content_id == verify_checkpoint(path)
    # Same content elsewhere: same id; different weights: different id.
    assert verify_checkpoint(_save(tmp_path / "b")) == content_id
    assert verify_checkpoint(_save(tmp_path / "c", value=2.0)) != content_id


def test_damaged_missing_or_incomplete_checkpoints_are_named(tmp_path):
    path = _save(tmp_path)
    with open(path / TENSORS_FILE, "r+b") as handle:
        handle.seek(-1, 2)
        last = handle.read(1)
        handle.seek(-1, 2)
        handle.write(bytes([last[0] ^ 0xFF]))
    with pytest.raises(CheckpointError, match="tensors.safetensors does not match") as info:
        verify_checkpoint(path)
    assert info.value.path == path
    (path / TENSORS_FILE).unlink()
    with pytest.raises(CheckpointError, match="missing tensors.safetensors"):
        verify_checkpoint(path)
    with pytest.raises(CheckpointError, match="not a complete checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        verify_checkpoint(tmp_path / "step-00000099")


def test_a_checkpoint_without_digest_is_not_listed(tmp_path):
    kept = _save(tmp_path, step=1)
    unfinished = _save(tmp_path, step=2)
    (unfinished / DIGEST_FILE).unlink()  # as if the writer died before the marker
    assert list_checkpoints(tmp_path) == [kept]
    with pytest.raises(CheckpointError, match="never completed"):
        verify_checkpoint(unfinished)


def test_extra_files_fail_verification_and_keep_last_prunes(tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step=step, keep_last=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000003"]
    (list_checkpoints(tmp_path)[-1] / "stray.txt").write_text("?")
    with pytest.raises(CheckpointError, match="stray.txt"):
        verify_checkpoint(list_checkpoints(tmp_path)[-1])
