"""The tracking spool keeps failed writes durably and in order, and hands them on."""

from __future__ import annotations

import multiprocessing

from platform.orchestration.spool import ADOPT_LOCK, Spool, spool_dir


def _spool_and_die(directory):
    spool = Spool(directory)
    for step in range(3):
        spool.append({"name": "log_metrics", "args": ["run", {"loss": 1.0}, step], "kwargs": {}})
    spool.drop_first(1)  # step 0 was delivered before the crash
    with open(spool.path, "a") as handle:
        handle.write('{"name": "log_metr')  # a crash in the middle of an append
    import os
    os._exit(1)


def test_spool_is_ordered_durable_and_adopted_after_its_writer_dies(tmp_path):
    directory = spool_dir(tmp_path, "http://user:secret@host:5000")
    assert "secret" not in str(directory)
    proc = multiprocessing.get_context("fork").Process(target=_spool_and_die, args=(directory,))
    proc.start()
    proc.join(30)
    (dead,) = directory.glob("*.jsonl")

    heir = Spool(directory)  # adopts the dead writer's undelivered writes, in order
    assert [entry["args"][2] for entry in heir.entries] == [1, 2]
    assert not dead.exists()
    live = Spool(directory)  # a second live writer does not steal the first one's spool
    assert len(live) == 0
    heir.append({"name": "end_run", "args": ["run", "FINISHED"], "kwargs": {}})
    heir.drop_first(2)
    assert [entry["name"] for entry in heir.entries] == ["end_run"]
    heir.drop_first(1)
    assert heir.path.read_text() == "" and len(heir) == 0
    heir.close()
    live.close()
    assert [p.name for p in directory.iterdir()] == [ADOPT_LOCK]  # empty spools leave nothing behind


def _start_spools_together(directory, barrier, queue):
    barrier.wait()
    spool = Spool(directory)
    queue.put([entry["args"][2] for entry in spool.entries])
    # All four stay alive until each has started: a writer that closed early would hand its
    # adopted (undelivered) writes on to a later starter, which is right, but not this case.
    barrier.wait()
    spool.close()  # keeps what it adopted (not delivered) for the next writer


def test_writers_starting_together_adopt_a_dead_spool_exactly_once(tmp_path):
    directory = spool_dir(tmp_path, "sqlite:///x.db")
    context = multiprocessing.get_context("fork")
    dead = context.Process(target=_spool_and_die, args=(directory,))
    dead.start()
    dead.join(30)
    barrier, queue = context.Barrier(4), context.Queue()
    starters = [context.Process(target=_start_spools_together, args=(directory, barrier, queue)) for _ in range(4)]
    for proc in starters:
        proc.start()
    adopted = sorted((queue.get(timeout=60) for _ in starters), key=len)
    for proc in starters:
        proc.join(30)
    assert adopted == [[], [], [], [1, 2]]  # one heir, each write once, in order
    heir = Spool(directory)
    assert [entry["args"][2] for entry in heir.entries] == [1, 2]  # handed on again, still once
    heir.close()
