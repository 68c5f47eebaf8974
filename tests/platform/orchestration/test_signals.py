"""The sweep's stop signals: each raises KeyboardInterrupt once, and a signal the process
was started with ignored (``nohup``, a script's ``cmd &``) stays ignored."""

from __future__ import annotations

import os
import signal

import pytest

from platform.orchestration.signals import StopHandler, stop_on_signals


@pytest.fixture
def sighup_ignored():
    previous = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # as nohup starts a process
    yield
    signal.signal(signal.SIGHUP, previous)


def test_an_ignored_signal_stays_ignored_and_the_others_stop_the_sweep(sighup_ignored):
    sigterm_before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals() as handler:
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is handler
        os.kill(os.getpid(), signal.SIGHUP)  # nohup's promise: the sweep outlives its terminal
        with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.pthread_sigmask(signal.SIG_BLOCK, [])  # a syscall: the handler runs by now
    assert handler.received == "SIGTERM" and handler.count == 1
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN  # nothing of ours is left behind
    assert signal.getsignal(signal.SIGTERM) is sigterm_before


def test_a_second_signal_is_reported_not_raised(capsys):
    handler = StopHandler()
    with pytest.raises(KeyboardInterrupt):
        handler(signal.SIGINT, None)
    handler(signal.SIGINT, None)
    assert "still marking runs as stopped" in capsys.readouterr().err and handler.received == "SIGINT"
