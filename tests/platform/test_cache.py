"""``python -m platform.cache`` on a real store: lists, verifies, and prunes only what is safe."""

import json

import torch

from platform.cache import main
from platform.checkpoint import save_checkpoint
from platform.orchestration.records import (
    check_record,
    checkpoint_ids,
    discard_stage,
    stage_dir,
    stage_lock,
    write_record,
)
from platform.tracking import TrackingStore


def _stage(work, stage, key, steps=(2, 4)):
    directory = stage_dir(work, stage, key)
    directory.mkdir(parents=True, exist_ok=True)
    ckpts = [save_checkpoint(directory / "checkpoints", s, {"m": {"w": torch.full((4,), float(s))}}, {}) for s in steps]
    write_record(directory, {"stage": stage, "key": key, "run_id": "r-" + key, "checkpoint": str(ckpts[-1]) if ckpts else None,
                             "checkpoints": checkpoint_ids(directory, ckpts), "finished_at": 0.0,
                             "provenance": {"commit": "abc123"}})
    return directory


def test_ls_verify_prune_on_a_real_store(tmp_path, capsys, new_sqlite_store):
    work = tmp_path / "runs"
    ldm = _stage(work, "ldm", "aaaa1111")
    other = _stage(work, "ldm", "bbbb2222")
    unfinished = stage_dir(work, "first_stage", "cccc3333")
    save_checkpoint(unfinished / "checkpoints", 1, {"m": {"w": torch.zeros(2)}}, {})
    old = _stage(work, "eval", "dddd4444", steps=())
    discard_stage(old, "sweep.rerun asks for it")
    store = TrackingStore(new_sqlite_store(work / "mlflow.db"))
    experiment = store.ensure_experiment("default")
    store.start_run(experiment, "trial-7", {"kind": "trial", "ldm_key": "aaaa1111"})

    assert main(["ls", "--work-dir", str(work)]) == 0
    listing = capsys.readouterr().out
    row = next(line for line in listing.splitlines() if "aaaa1111" in line)
    assert "finished" in row and "abc123" in row and "trial-7" in row and " KB" in row
    assert "unfinished" in next(line for line in listing.splitlines() if "cccc3333" in line)

    assert main(["verify", "--work-dir", str(work)]) == 0
    (other / "checkpoints" / "step-00000002" / "tensors.safetensors").write_bytes(b"damaged")
    assert main(["verify", "--work-dir", str(work)]) == 1
    assert "bbbb2222: checkpoint" in capsys.readouterr().out

    assert main(["prune", "--work-dir", str(work), "--keep-checkpoints", "1", "--dry-run"]) == 0
    assert (ldm / "checkpoints" / "step-00000002").exists()
    assert main(["prune", "--work-dir", str(work), "--keep-checkpoints", "1"]) == 0
    assert not any((work / "stages" / "eval" / ".discarded").iterdir())
    assert not (ldm / "checkpoints" / "step-00000002").exists() and (ldm / "checkpoints" / "step-00000004").exists()
    record = json.loads((ldm / "record.json").read_text())
    assert list(record["checkpoints"]) == ["checkpoints/step-00000004"] and record["pruned_checkpoints"]
    assert check_record(ldm)[1] is None  # still a valid, verified result
    assert unfinished.exists()  # resumable work stays unless asked
    assert main(["prune", "--work-dir", str(work), "--unfinished"]) == 0
    assert not unfinished.exists() and ldm.exists() and other.exists()  # finished stages are never deleted
    assert main(["ls", "--work-dir", str(tmp_path / "nowhere")]) == 2


def test_prune_leaves_a_stage_a_running_sweep_holds(tmp_path, capsys):
    # A sweep training a stage holds its lock (records.stage_lock); its run references the
    # unfinished directory, so even --unfinished must not take it away.
    work = tmp_path / "runs"
    training = stage_dir(work, "ldm", "eeee5555")
    save_checkpoint(training / "checkpoints", 1, {"m": {"w": torch.zeros(2)}}, {})
    with stage_lock(training):
        assert main(["prune", "--work-dir", str(work), "--unfinished"]) == 0
    assert (training / "checkpoints").exists() and "in use" in capsys.readouterr().out
    assert main(["prune", "--work-dir", str(work), "--unfinished"]) == 0
    assert not training.exists()  # released: an abandoned unfinished stage may go
