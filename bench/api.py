"""The contract between the shared bench driver (bench/run.py) and each backend module, and the one measurement
loop of every backend. Torch-free.

A backend module exposes `measure(workload, model: ResolvedModel, prompt_ids, args, progress: IterationProgress)
-> Measurement`: it supplies `async request(warmup, i) -> record` (one timed iteration) to run_scenario, which owns
warm-up, measured iterations, progress and Ctrl-C (it propagates from wherever it lands; nothing partial is returned);
the driver turns the Measurement into a core.results.BenchResult (summary statistics, provenance, roofline) and writes
it atomically. vLLM awaits the loop under asyncio.run; a synchronous backend (plain calls inside `async def`) uses
run_sync.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Coroutine, Optional, TypeVar

from core.engine_samples import EngineSamples
from core.results import Backend

T = TypeVar("T")


@dataclass
class ResolvedModel:
    """A checkpoint on local disk, and where it came from."""

    path: str  # local directory holding config.json + safetensors
    model_id: str  # hub id, local path, or synthetic config name (what the report prints)
    source: str  # "hub" | "local" | "synthetic"
    revision: Optional[str] = None
    resolved_revision: Optional[str] = None
    synthetic_config: Optional[str] = None
    config: dict[str, Any] = field(default_factory=dict)  # config.json


@dataclass
class Measurement:
    """Raw client-side samples of the measured iterations (warm-up excluded), milliseconds."""

    ttft_ms: list[float]
    tpot_ms: list[float]
    e2e_ms: list[float]
    itl_ms: list[list[float]]  # per iteration, one gap per streamed output after the first
    backend: Backend
    tokens_per_output: Optional[list[list[int]]] = None  # tokens in each streamed output; None: one each
    engine: Optional[EngineSamples] = None  # vLLM engine-side timestamps, raw (their own clocks)
    # transformers: per iteration, the instrumented generate() and a bare one right after it (the overhead baseline)
    instrumented_generate_ms: Optional[list[float]] = None
    bare_generate_ms: Optional[list[float]] = None
    notes: list[str] = field(default_factory=list)


@dataclass
class IterationProgress:
    """Iterations done, shared with the driver (Ctrl-C says how many finished). Only run_scenario counts;
    each count runs `listener` (the display) between iterations. The loop calls `before_measured` and `after_measured`
    around the measured iterations: the driver reads the GPU's conditions there (bench/conditions.py)."""

    total: int
    done: int = 0
    warmup_total: int = 0
    warmup_done: int = 0
    listener: Optional[Callable[[], None]] = field(default=None, repr=False, compare=False)
    before_measured: Optional[Callable[[], None]] = field(default=None, repr=False, compare=False)
    after_measured: Optional[Callable[[], None]] = field(default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name in ("done", "warmup_done") and getattr(self, "listener", None) is not None:
            self.listener()


def derive_token_timing(t_submit: float, output_times: list[float],
                        tokens_per_output: Optional[list[int]] = None) -> tuple[float, list[float], float, float]:
    """TTFT, inter-output gaps, end-to-end and TPOT (ms) from one request's clock readings (s): one per streamed
    output, carrying tokens_per_output tokens each (None: one each). TPOT = (e2e - TTFT) / (N - 1), N tokens in all;
    one gap per output after the first, so tokens that arrived together invent no 0 ms gaps."""
    if not output_times:
        raise ValueError("no generated tokens were timed")
    counts = [1] * len(output_times) if tokens_per_output is None else list(tokens_per_output)
    if len(counts) != len(output_times) or any(k < 1 for k in counts):
        raise ValueError("one token count >= 1 per streamed output is needed")
    if any(b < a for a, b in zip(output_times, output_times[1:])) or output_times[0] < t_submit:
        raise ValueError("token timestamps must be non-decreasing and after submission")
    ttft = (output_times[0] - t_submit) * 1e3
    e2e = (output_times[-1] - t_submit) * 1e3
    gaps = [(b - a) * 1e3 for a, b in zip(output_times, output_times[1:])]
    n = sum(counts)
    tpot = (e2e - ttft) / (n - 1) if n > 1 else 0.0
    return ttft, gaps, e2e, tpot


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
