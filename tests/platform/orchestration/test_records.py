"""Stage records appear atomically, travel with their directory, and verify before reuse."""

import json
import multiprocessing
import shutil
import time

import torch

from platform.checkpoint import save_checkpoint
from platform.orchestration.records import (
    RECORD,
    check_record,
    checkpoint_ids,
    discard_stage,
    discarded_count,
    read_record,
    stage_dir,
    stage_lock,
    write_record,
)
from platform.orchestration.reuse import decide


def _finished(work, stage="ldm", key="abc", value=1.0):
    directory = stage_dir(work, stage, key)
    ckpts = [save_checkpoint(directory / "checkpoints", step, {"m": {"w": torch.full((2,), value)}}, {})
             for step in (1, 2)]
    write_record(directory, {"stage": stage, "key": key, "run_id": "r1", "step": 2, "checkpoint": str(ckpts[-1]),
                             "checkpoints": checkpoint_ids(directory, ckpts)})
    return directory, ckpts


def test_record_round_trip_and_absent_until_written(tmp_path):
    directory = stage_dir(tmp_path, "ldm", "abc")
    directory.mkdir(parents=True)
    assert read_record(directory) is None
    write_record(directory, {"stage": "ldm", "key": "abc", "run_id": "r", "summary": {"eval/fid": 1.5}})
    assert read_record(directory)["summary"] == {"eval/fid": 1.5}
    assert [p.name for p in directory.iterdir()] == [RECORD]  # no temp file left


def test_paths_are_stored_relative_so_the_store_can_move(tmp_path):
    directory, ckpts = _finished(tmp_path / "a")
    stored = json.loads((directory / RECORD).read_text())
    assert stored["checkpoint"] == "checkpoints/step-00000002" and str(tmp_path) not in json.dumps(stored)
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = stage_dir(tmp_path / "b", "ldm", "abc")
    record, problem = check_record(moved)
    assert problem is None and record["checkpoint"] == str(moved / "checkpoints" / "step-00000002")


def test_damaged_or_missing_checkpoints_and_bad_json_are_named(tmp_path):
    directory, ckpts = _finished(tmp_path)
    assert check_record(directory)[1] is None
    shutil.rmtree(ckpts[0])
    record, problem = check_record(directory)
    assert record is not None and "step-00000001" in problem and "does not exist" in problem
    (directory / RECORD).write_text("{not json")
    assert check_record(directory) == (None, f"{directory / RECORD} is unreadable (Expecting property name "
                                             "enclosed in double quotes: line 1 column 2 (char 1))")


def test_failed_verification_moves_the_result_aside_and_reruns_downstream(tmp_path, capsys):
    first, _ = _finished(tmp_path, "first_stage", "f1")
    ldm, ckpts = _finished(tmp_path, "ldm", "l1")
    evaluation = stage_dir(tmp_path, "eval", "e1")
    evaluation.mkdir(parents=True)
    write_record(evaluation, {"stage": "eval", "key": "e1", "run_id": "r3"})
    chain = [[("first_stage", "f1"), ("ldm", "l1"), ("eval", "e1")]]
    assert [d.run for d in decide(tmp_path, chain, []).values()] == [False, False, False]
    assert [d.run for d in decide(tmp_path, chain, ["eval"]).values()] == [False, False, True]
    assert discarded_count(evaluation) == 1 and read_record(evaluation) is None
    shutil.rmtree(ckpts[-1])  # a checkpoint the LDM record vouches for
    decisions = decide(tmp_path, chain, [])
    assert [d.run for d in decisions.values()] == [False, True, True]
    assert "step-00000002" in decisions["l1"].reason and decisions["l1"].replaced_run == "r1"
    assert "running it again" in capsys.readouterr().err
    moved = list((tmp_path / "stages" / "ldm" / ".discarded").iterdir())
    assert len(moved) == 1 and (moved[0] / "discarded.txt").read_text().startswith("checkpoint")
    assert not ldm.exists() or [p.name for p in ldm.iterdir()] == [".lock"]
    assert decide(tmp_path, [[("first_stage", "f1")]], ["f1"])["f1"].run  # a key prefix
    assert discard_stage(first, "again") is None  # nothing left to move


def _hold(directory, seconds, out):
    with stage_lock(directory):
        out.put(("in", time.time()))
        time.sleep(seconds)
        out.put(("out", time.time()))


def test_lock_excludes_a_second_process(tmp_path):
    queue = multiprocessing.get_context("fork").Queue()
    procs = [multiprocessing.get_context("fork").Process(target=_hold, args=(tmp_path, 0.5, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(10)
    events = sorted((queue.get() for _ in range(4)), key=lambda e: e[1])
    assert [e[0] for e in events] == ["in", "out", "in", "out"]
