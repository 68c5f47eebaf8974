"""SIGHUP (a closed terminal) and SIGINT (Ctrl-C) end a sweep cleanly, whatever the driver
is doing: stub stages on a real local Ray cluster and a real SQLite store. SIGTERM and
SIGKILL during a real LDM stage: tests/platform/orchestration/test_sweep_e2e.py."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from platform.orchestration import runner as runner_module
from platform.orchestration.signals import EXIT_INTERRUPTED
from platform.tracking import TrackingStore
from tests.platform.orchestration import stubs
from tests.platform.orchestration.test_runner import EXPERIMENT, _calls, _plans

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("signals_not_ignored")]


@pytest.fixture
def signals_not_ignored():
    """SIGHUP and SIGINT as a terminal leaves them, whatever started the suite: ``nohup``
    or a script's ``cmd &`` hands pytest ignored signals, which the sweep keeps ignoring."""
    defaults = {signal.SIGHUP: signal.SIG_DFL, signal.SIGINT: signal.default_int_handler}
    ignored = [sig for sig in defaults if signal.getsignal(sig) is signal.SIG_IGN]
    for sig in ignored:
        signal.signal(sig, defaults[sig])
    yield
    for sig in ignored:
        signal.signal(sig, signal.SIG_IGN)


def _statuses(work) -> dict[str, str]:
    store = TrackingStore(f"sqlite:///{work / 'mlflow.db'}")
    return {run.info.run_name: run.info.status for run in store.runs(EXPERIMENT)}


def _run_plans(monkeypatch, work, shards, **functions) -> int:
    """``run_plans`` as ``python -m platform.sweep`` calls it, with stub stage functions."""
    init = runner_module.SweepRunner.__init__
    monkeypatch.setattr(runner_module.SweepRunner, "__init__",
                        lambda self, plans, stage_functions=None: init(self, plans, functions))
    return runner_module.run_plans(_plans(work, shards))


def test_sighup_during_a_stage_stops_the_sweep_and_marks_its_runs(figures, ray_cluster, tiny_shards, tmp_path, monkeypatch,
                                                                  capsys):
    work = tmp_path / "work"
    sent: list[float] = []

    def hang_up_once_the_ldm_runs() -> None:
        deadline = time.time() + 120
        while _calls(work, "ldm") == 0 and time.time() < deadline:
            time.sleep(0.2)
        sent.append(time.time())
        os.kill(os.getpid(), signal.SIGHUP)  # the handler raises in the main thread, in the wait loop

    threading.Thread(target=hang_up_once_the_ldm_runs, daemon=True).start()
    try:
        code = _run_plans(monkeypatch, work, tiny_shards, first_stage=stubs.first_stage_ok, ldm=stubs.ldm_waits)
        stopped_s = time.time() - sent[0]
        statuses = _statuses(work)  # before the stub stages are released (they would end their runs)
    finally:
        for release in work.glob("stages/ldm/*/"):
            (release / "release").touch()
    err = capsys.readouterr().err
    assert code == EXIT_INTERRUPTED and "SIGHUP: stopping" in err, err
    assert "RUNNING" not in statuses.values(), statuses
    assert [s for name, s in statuses.items() if name.startswith("first_stage")] == ["FINISHED"]  # has a record
    assert sorted(s for name, s in statuses.items() if not name.startswith("first_stage")) == ["KILLED"] * 5
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL  # the handler is gone with the sweep
    figures(f"SIGHUP during a stage: stopped in {stopped_s:.1f} s, 0 runs RUNNING")


def test_sigint_while_runs_are_opened_stops_the_sweep_and_marks_its_runs(ray_cluster, tiny_shards, tmp_path,
                                                                         monkeypatch, capsys):
    """Ctrl-C outside the wait loop: after some runs are opened, before any stage starts."""
    work = tmp_path / "work"
    share_view = runner_module.SweepRunner._share_view

    def interrupted(self) -> None:  # every run is open now; the stage tasks are not submitted yet
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1)  # not reached: the handler raises in this thread as soon as the signal lands
        share_view(self)

    monkeypatch.setattr(runner_module.SweepRunner, "_share_view", interrupted)
    # Whatever handler the process had before (an earlier test's in-process Ray Train leaves its own).
    before = signal.getsignal(signal.SIGINT)
    code = _run_plans(monkeypatch, work, tiny_shards, first_stage=stubs.first_stage_ok, ldm=stubs.ldm_ok)
    err = capsys.readouterr().err
    assert code == EXIT_INTERRUPTED and "SIGINT: stopping" in err, err
    statuses = _statuses(work)
    assert len(statuses) == 6 and set(statuses.values()) == {"KILLED"}, statuses  # sweep, 2 trials, 3 stages
    assert (_calls(work, "first_stage"), _calls(work, "ldm")) == (0, 0)
    assert signal.getsignal(signal.SIGINT) is before  # the sweep's handler is gone with it
