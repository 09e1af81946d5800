"""The bench's progress display runs between iterations, in the backend's thread: nothing of it runs while a
generate() is timed (a polling thread once did; its cost is in README's Methodology, the run in results/)."""
from __future__ import annotations

import threading

from bench.api import IterationProgress
from bench.run import progress_display


def _progress_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "bench-progress"]


def test_progress_updates_when_an_iteration_is_counted_and_starts_no_thread(capsys):
    threads_before = set(threading.enumerate())
    progress = IterationProgress(total=3, warmup_total=1)
    with progress_display(progress):
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
