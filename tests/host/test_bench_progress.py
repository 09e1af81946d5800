"""The bench's progress display runs between iterations, in the backend's thread: nothing of it runs while a
generate() is timed. KIT_PROGRESS_POLL_S brings back a polling thread, only to measure what it costs."""
from __future__ import annotations

import threading

import pytest

from bench.api import IterationProgress
from core.errors import BenchError
from bench.run import ProgressDisplay, progress_poll_interval


def _progress_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "bench-progress"]


def test_progress_updates_when_an_iteration_is_counted_and_starts_no_thread(capsys, monkeypatch):
    monkeypatch.delenv("KIT_PROGRESS_POLL_S", raising=False)
    threads_before = set(threading.enumerate())
    progress = IterationProgress(total=3, warmup_total=1)
    with ProgressDisplay(progress, progress_poll_interval()):
        assert set(threading.enumerate()) == threads_before and not _progress_threads()
        progress.warmup_done += 1
        assert "warm-up 1/1" in capsys.readouterr().err  # at once, not at a later poll
        progress.done += 1
        assert "measured 1/3" in capsys.readouterr().err
        progress.done += 1
        assert "measured 2/3" in capsys.readouterr().err
    assert progress.listener is None
    progress.done += 1  # after the display closed: counted, not shown
    assert capsys.readouterr().err == ""


def test_a_poll_interval_runs_the_polling_thread_for_measuring_its_cost(monkeypatch):
    monkeypatch.setenv("KIT_PROGRESS_POLL_S", "0.2")
    progress = IterationProgress(total=1)
    with ProgressDisplay(progress, progress_poll_interval()):
        assert _progress_threads() == ["bench-progress"]
    assert not _progress_threads()


@pytest.mark.parametrize("raw", ["fast", "-1"])
def test_a_bad_poll_interval_is_one_paragraph(monkeypatch, raw):
    monkeypatch.setenv("KIT_PROGRESS_POLL_S", raw)
    with pytest.raises(BenchError, match="KIT_PROGRESS_POLL_S=.* is not a number of seconds"):
        progress_poll_interval()


def test_zero_or_unset_means_no_thread(monkeypatch):
    monkeypatch.setenv("KIT_PROGRESS_POLL_S", "0")
    assert progress_poll_interval() is None
    monkeypatch.delenv("KIT_PROGRESS_POLL_S")
    assert progress_poll_interval() is None
