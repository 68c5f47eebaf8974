"""Stage records appear atomically; the stage lock serialises two processes."""

import multiprocessing
import time

from platform.orchestration.records import read_record, stage_dir, stage_lock, write_record


def test_record_round_trip_and_absent_until_written(tmp_path):
    directory = stage_dir(tmp_path, "ldm", "abc")
    directory.mkdir(parents=True)
    assert read_record(directory) is None
    write_record(directory, {"step": 3, "summary": {"eval/fid": 1.5}})
    assert read_record(directory) == {"step": 3, "summary": {"eval/fid": 1.5}}
    assert [p.name for p in directory.iterdir()] == ["record.json"]  # no temp file left


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
