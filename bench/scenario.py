"""The one measurement loop of every backend: warm-up, measured iterations, progress, Ctrl-C.

A backend supplies `async request(warmup, i) -> record` (one timed iteration, whatever it needs); run_scenario
returns the measured records, counts progress only between requests and calls the progress hooks (bench/api.py)
around the measured iterations. Ctrl-C propagates from wherever it lands and nothing partial is returned. vLLM
awaits the loop under asyncio.run; a synchronous backend (plain calls inside `async def`) uses run_sync.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Coroutine, TypeVar

from bench.api import IterationProgress

T = TypeVar("T")


async def run_scenario(request: Callable[[bool, int], Awaitable[T]], warmup: int, iterations: int,
                       progress: IterationProgress) -> list[T]:
    progress.warmup_total, progress.total = warmup, iterations
    for i in range(warmup):
        await request(True, i)
        progress.warmup_done += 1  # the progress display updates here, between requests
    if progress.before_measured is not None:
        progress.before_measured()  # the driver's conditions probe: outside every timed request
    records = []
    for i in range(iterations):
        records.append(await request(False, i))
        progress.done += 1
    if progress.after_measured is not None:
        progress.after_measured()
    return records


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that never suspends (a synchronous backend's scenario) to its end, without an event loop.

    Not asyncio.run: its SIGINT handler only cancels the task at its next suspension, which blocking code never
    reaches. Here Ctrl-C raises KeyboardInterrupt where it lands, as in plain synchronous code.
    """
    try:
        coro.send(None)
    except StopIteration as done:
        return done.value
    coro.close()
    raise RuntimeError("a synchronous backend's request awaited something that suspends; run it under asyncio.run")
