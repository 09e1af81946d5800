"""bench/api.py's run_scenario, the one measurement loop, with scripted requests (no torch, no engine).

Both ways a backend runs it: under asyncio.run (vLLM: requests that await a stream) and under run_sync (transformers:
requests that block), Ctrl-C included."""
from __future__ import annotations

import asyncio
import signal

import pytest

from bench.api import IterationProgress, run_scenario, run_sync
from core.errors import BenchError
from signals import sigint_raises_keyboard_interrupt


class ScriptedRequest:
    """A timed request that logs its calls and whether one is running; `suspend` awaits between its steps, as a
    streamed vLLM request does, and `interrupt_at` raises SIGINT in that call (phase, i), between its two steps."""

    def __init__(self, suspend: bool = False, interrupt_at=None, fail_at=None):
        self.suspend, self.interrupt_at, self.fail_at = suspend, interrupt_at, fail_at
        self.calls: list[tuple[bool, int]] = []
        self.finished: list[tuple[bool, int]] = []
        self.running = False

    async def __call__(self, warmup: bool, i: int) -> str:
        self.calls.append((warmup, i))
        self.running = True
        try:
            if self.suspend:
                await asyncio.sleep(0)
            if (warmup, i) == self.interrupt_at:
                signal.raise_signal(signal.SIGINT)
            if (warmup, i) == self.fail_at:
                raise BenchError("wrong token count")
            if self.suspend:
                await asyncio.sleep(0)
            self.finished.append((warmup, i))
            return f"{'warmup' if warmup else 'iter'}-{i}"
        finally:
            self.running = False


@pytest.fixture
def sigint_raises():
    with sigint_raises_keyboard_interrupt():
        yield


@pytest.mark.parametrize("suspend", [False, True], ids=["run_sync", "asyncio.run"])
def test_warmup_then_measured_records_only_the_measured_in_order(suspend):
    request = ScriptedRequest(suspend=suspend)
    progress = IterationProgress(total=0)
    coro = run_scenario(request, 2, 3, progress)
    records = asyncio.run(coro) if suspend else run_sync(coro)
    assert request.calls == [(True, 0), (True, 1), (False, 0), (False, 1), (False, 2)]
    assert records == ["iter-0", "iter-1", "iter-2"]  # warm-up records dropped
    assert (progress.warmup_total, progress.warmup_done, progress.total, progress.done) == (2, 2, 3, 3)


def test_zero_warmup_goes_straight_to_the_measured_requests():
    request = ScriptedRequest()
    progress = IterationProgress(total=1, warmup_total=5)
    assert run_sync(run_scenario(request, 0, 1, progress)) == ["iter-0"]
    assert request.calls == [(False, 0)] and (progress.warmup_total, progress.warmup_done) == (0, 0)


def test_progress_is_counted_between_requests_never_during_one():
    request = ScriptedRequest(suspend=True)
    progress = IterationProgress(total=3, warmup_total=1)
    seen = []

    def listener():
        assert not request.running, "the display ran while a request was being timed"
        seen.append((progress.warmup_done, progress.done, len(request.finished)))

    progress.listener = listener
    asyncio.run(run_scenario(request, 1, 3, progress))
    # Each count comes once, after its request finished and before the next one started.
    assert seen == [(1, 0, 1), (1, 1, 2), (1, 2, 3), (1, 3, 4)]


def test_ctrl_c_under_asyncio_run_reports_the_finished_iterations(sigint_raises):
    """vLLM's way: asyncio.run turns SIGINT into a cancellation at the request's next await; it leaves as
    KeyboardInterrupt, nothing is returned, and the counts are what finished."""
    request = ScriptedRequest(suspend=True, interrupt_at=(False, 2))
    progress = IterationProgress(total=5)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(run_scenario(request, 1, 5, progress))
    assert (progress.warmup_done, progress.done) == (1, 2)
    assert request.calls[-1] == (False, 2) and (False, 2) not in request.finished  # cut in its second step
    assert not request.running


def test_ctrl_c_under_run_sync_lands_inside_the_blocking_request(sigint_raises):
    """transformers' way: no event loop, so Ctrl-C raises where it lands, inside the generate() it interrupts, not
    after the run (under asyncio.run a request that never suspends would run every iteration first)."""
    request = ScriptedRequest(interrupt_at=(False, 1))
    progress = IterationProgress(total=500)
    with pytest.raises(KeyboardInterrupt):
        run_sync(run_scenario(request, 2, 500, progress))
    assert (progress.warmup_done, progress.done) == (2, 1)
    assert request.calls[-1] == (False, 1) and (False, 1) not in request.finished


def test_an_error_in_a_request_stops_the_loop_and_is_not_counted():
    request = ScriptedRequest(fail_at=(False, 1))
    progress = IterationProgress(total=3)
    with pytest.raises(BenchError, match="wrong token count"):
        run_sync(run_scenario(request, 1, 3, progress))
    assert progress.done == 1 and request.calls[-1] == (False, 1)


def test_run_sync_refuses_a_request_that_suspends():
    request = ScriptedRequest(suspend=True)
    with pytest.raises(RuntimeError, match="awaited something that suspends"):
        run_sync(run_scenario(request, 0, 2, IterationProgress(total=2)))
    assert not request.running and request.calls == [(False, 0)]  # closed: its finally ran, nothing more started


@pytest.mark.parametrize("suspend", [False, True], ids=["run_sync", "asyncio.run"])
def test_measured_hooks_run_after_the_warmup_and_after_the_last_measured_request(suspend):
    """The driver's run-conditions probe (bench/conditions.py) hangs on these: outside every timed request."""
    request = ScriptedRequest(suspend=suspend)
    progress = IterationProgress(total=0)
    events = []
    progress.before_measured = lambda: events.append(("before", list(request.calls), request.running))
    progress.after_measured = lambda: events.append(("after", list(request.calls), request.running))
    coro = run_scenario(request, 2, 2, progress)
    asyncio.run(coro) if suspend else run_sync(coro)
    warmup = [(True, 0), (True, 1)]
    assert events == [("before", warmup, False), ("after", warmup + [(False, 0), (False, 1)], False)]


def test_after_measured_does_not_run_when_the_loop_fails():
    request = ScriptedRequest(fail_at=(False, 0))
    progress = IterationProgress(total=1)
    after = []
    progress.after_measured = lambda: after.append(True)
    with pytest.raises(BenchError):
        run_sync(run_scenario(request, 0, 1, progress))
    assert after == []  # no result is written either: nothing to record conditions for
