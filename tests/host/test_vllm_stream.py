"""The vLLM backend's stream-consuming timing logic and argument rules, without torch or vllm.

The real engine needs a GPU, so the async stream is replaced by test doubles named as such:
`FakeAsyncLLMStream` (one request's stream of RequestOutput-shaped objects, driving a
`FakeClock` so every client clock reading is known) and `FakeAsyncLLM` (generate / shutdown).
What they imitate is vLLM 0.12.0's AsyncLLM.generate with RequestOutputKind.DELTA: each yield
carries the new token ids in outputs[0].token_ids (several when outputs were merged behind a
slow consumer), `finished` on the last one, and RequestOutput.metrics, a RequestStateStats whose
timestamps are on the engine-core clock.

The exact keyword arguments checked here are handed to the real vllm 0.12.0 classes in
tests/vllm/test_vllm_args_real.py.
"""
from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import vllm_args, vllm_backend  # noqa: E402

from core import engine_samples, rules  # noqa: E402
from bench.api import IterationProgress  # noqa: E402
from core.errors import BenchError  # noqa: E402
from core.results import Workload  # noqa: E402
from signals import sigint_raises_keyboard_interrupt  # noqa: E402  (tests/support)


# --------------------------------------------------------------------------- test doubles


class FakeClock:
    """A client clock that only moves when the fake stream says so (seconds)."""

    def __init__(self, start: float = 100.0):
        self.now = start

    def __call__(self) -> float:
        return self.now


@dataclass
class FakeRequestStateStats:
    """Shape of vllm.v1.metrics.stats.RequestStateStats (engine-core monotonic clock)."""

    num_generation_tokens: int = 0
    arrival_time: float = 0.0
    queued_ts: float = 0.0
    scheduled_ts: float = 0.0
    first_token_ts: float = 0.0
    last_token_ts: float = 0.0
    first_token_latency: float = 0.0
    is_corrupted: bool = False


class FakeAsyncLLMStream:
    """Test double of the async generator AsyncLLM.generate(...) returns for one DELTA request.

    chunks: tokens per yield, e.g. [1, 1, 3, 1] (3 = three outputs merged for a slow consumer).
    delays: seconds the FakeClock advances before each yield (the first one is the TTFT).
    """

    def __init__(self, clock: FakeClock, chunks: list[int], delays: list[float], finished: bool = True,
                 engine_t0: float = 5_000_000.0, finish_reason: str = "length", on_yield=None):
        assert len(chunks) == len(delays)
        self.clock, self.chunks, self.delays = clock, chunks, delays
        self.finished, self.finish_reason = finished, finish_reason
        self.metrics = FakeRequestStateStats(arrival_time=1.7e9, queued_ts=engine_t0, scheduled_ts=engine_t0 + 0.001)
        self.engine_t0 = self.engine_now = engine_t0
        self.started = False
        self.closed = False
        self.on_yield = on_yield
        self._gen = self._run()

    async def _run(self):
        self.started = True
        try:
            for i, (k, dt) in enumerate(zip(self.chunks, self.delays)):
                await asyncio.sleep(0)
                self.clock.now += dt
                self.engine_now += dt  # the engine clock moves too, but from its own far-away origin
                m = self.metrics
                if m.first_token_ts == 0.0:
                    m.first_token_ts = self.engine_now
                    m.first_token_latency = self.engine_now - self.engine_t0  # the frontend's arrival -> first token
                m.last_token_ts = self.engine_now
                m.num_generation_tokens += k
                last = i == len(self.chunks) - 1
                done = last and self.finished
                yield SimpleNamespace(
                    outputs=[SimpleNamespace(token_ids=list(range(k)), finish_reason=self.finish_reason if done else None)],
                    finished=done,
                    metrics=m,
                )
                if self.on_yield is not None:
                    self.on_yield(i)
        finally:
            self.closed = True  # vLLM's generate() aborts the request here when closed early

    def __aiter__(self):
        return self

    async def __anext__(self):
        return await self._gen.__anext__()

    async def aclose(self):
        await self._gen.aclose()


class FakeAsyncLLM:
    """Test double of vllm AsyncLLM: generate() hands out FakeAsyncLLMStreams; records calls."""

    def __init__(self, clock: FakeClock, n: int, on_yield=None):
        self.clock, self.n, self.on_yield = clock, n, on_yield
        self.calls: list[tuple] = []
        self.streams: list[FakeAsyncLLMStream] = []
        self.shutdown_calls = 0
        self.vllm_config = None

    def generate(self, prompt, sampling, request_id):
        self.calls.append((prompt, sampling, request_id))
        s = FakeAsyncLLMStream(self.clock, [1] * self.n, [0.010] + [0.002] * (self.n - 1),
                               on_yield=self.on_yield)
        self.streams.append(s)
        return s

    def shutdown(self):
        self.shutdown_calls += 1


def _workload(**kw) -> Workload:
    base = dict(model="tiny", model_source="synthetic", synthetic=True, input_len=32, output_len=8, warmup=2,
                iterations=3, seed=0)
    base.update(kw)
    return Workload(**base)


def _run(coro):
    return asyncio.run(coro)


# --------------------------------------------------------------------------- stream consumption


def test_merged_deltas_give_one_gap_per_streamed_output_not_invented_zeros():
    clock = FakeClock(100.0)
    stream = FakeAsyncLLMStream(clock, chunks=[1, 1, 3, 1], delays=[0.050, 0.005, 0.015, 0.005])
    rec = _run(vllm_backend.consume_stream(lambda: stream, "r0", clock=clock))
    assert rec.t_submit == 100.0
    assert rec.n_tokens == 6
    assert rec.tokens_per_yield == [1, 1, 3, 1]
    assert rec.merged_yields == 1
    assert rec.output_times == pytest.approx([100.050, 100.055, 100.070, 100.075])
    assert rec.finished and rec.finish_reason == "length"
    ttft, gaps, e2e, tpot = vllm_backend.iteration_timing(rec)
    assert gaps == pytest.approx([5.0, 15.0, 5.0])  # one per output after the first: no 0 ms gaps
    assert 0.0 not in gaps
    assert ttft == pytest.approx(50.0) and e2e == pytest.approx(75.0)
    assert tpot == pytest.approx((75.0 - 50.0) / (6 - 1))  # every token counts in TPOT
    counts = vllm_backend.merge_counts([rec])
    assert counts["merged_outputs"] == 1 and counts["outputs"] == 4 and counts["max_tokens_in_one_output"] == 3
    assert "1 of 1 measured requests" in vllm_backend.stream_notes([rec])[0]


def test_ttft_and_tpot_by_definition():
    clock = FakeClock(0.0)
    n = 5
    stream = FakeAsyncLLMStream(clock, chunks=[1] * n, delays=[0.040, 0.006, 0.006, 0.007, 0.005])
    rec = _run(vllm_backend.consume_stream(lambda: stream, "r0", clock=clock))
    ttft, gaps, e2e, tpot = vllm_backend.iteration_timing(rec)
    assert ttft == pytest.approx(40.0)  # first token - submission
    assert e2e == pytest.approx(64.0)  # last token - submission
    assert tpot == pytest.approx((64.0 - 40.0) / (n - 1))  # (e2e - TTFT) / (N - 1)
    assert sum(gaps) == pytest.approx(e2e - ttft)


def test_submission_clock_is_read_before_the_request_is_submitted():
    clock = FakeClock(10.0)
    stream = FakeAsyncLLMStream(clock, chunks=[1, 1], delays=[0.1, 0.1])

    def start():
        assert not stream.started  # creating the stream submits nothing ...
        return stream

    rec = _run(vllm_backend.consume_stream(start, "r0", clock=clock))
    assert stream.started  # ... iterating it does, after t_submit was read
    assert rec.t_submit == 10.0


@pytest.mark.parametrize("chunks,finished", [([1, 1, 1], True), ([1, 1, 1, 1, 1], True), ([1, 1, 1, 1], False)])
def test_exactly_n_tokens_or_a_clear_error(chunks, finished):
    clock = FakeClock()
    stream = FakeAsyncLLMStream(clock, chunks=chunks, delays=[0.01] * len(chunks), finished=finished)
    rec = _run(vllm_backend.consume_stream(lambda: stream, "req-7", clock=clock))
    with pytest.raises(BenchError) as err:
        vllm_backend.check_record(rec, 4)
    msg = str(err.value)
    assert "req-7" in msg and f"after {sum(chunks)} generated tokens" in msg and "exactly 4" in msg
    assert ("ended before finishing" in msg) == (not finished)


def test_exact_count_passes():
    clock = FakeClock()
    stream = FakeAsyncLLMStream(clock, chunks=[2, 1, 1], delays=[0.01, 0.01, 0.01])
    rec = _run(vllm_backend.consume_stream(lambda: stream, "r", clock=clock))
    vllm_backend.check_record(rec, 4)


def test_leaving_early_closes_the_stream_so_vllm_aborts_the_request():
    clock = FakeClock()
    stream = FakeAsyncLLMStream(clock, chunks=[1, 1, 1, 1], delays=[0.01] * 4)

    async def main():
        task = asyncio.create_task(vllm_backend.consume_stream(lambda: stream, "r", clock=clock))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        task.cancel()  # e.g. Ctrl-C while the consumer waits for the next output
        with pytest.raises(asyncio.CancelledError):
            await task

    _run(main())
    assert stream.started and stream.closed


def test_a_failure_in_the_consumer_closes_the_stream():
    clock = FakeClock()

    class BrokenStream(FakeAsyncLLMStream):
        async def __anext__(self):
            out = await self._gen.__anext__()
            out.outputs = []  # something the consumer cannot read
            return out

    stream = BrokenStream(clock, chunks=[1, 1], delays=[0.01, 0.01])
    with pytest.raises(IndexError):
        _run(vllm_backend.consume_stream(lambda: stream, "r", clock=clock))
    assert stream.closed


# --------------------------------------------------------------------------- engine metrics


def test_engine_metrics_kept_separate_from_client_samples():
    clock = FakeClock(100.0)
    wl = _workload(output_len=4, iterations=2, warmup=0)
    streams = [FakeAsyncLLMStream(clock, [1, 1, 1, 1], [0.030, 0.005, 0.005, 0.005], engine_t0=5_000_000.0 + i)
               for i in range(2)]
    records = [_run(vllm_backend.consume_stream(lambda s=s: s, f"r{i}", clock=clock)) for i, s in enumerate(streams)]
    ekw = vllm_args.engine_kwargs("/nonexistent", wl, argparse.Namespace(quantization="awq"))
    skw = vllm_args.sampling_kwargs(wl, argparse.Namespace())
    m = vllm_backend.assemble_measurement(records, wl, ekw, skw, {}, "0.12.0", (8, 0))
    # Client samples come from the client clock only (the engine clock starts at 5e6 s).
    assert m.ttft_ms == pytest.approx([30.0, 30.0])
    assert m.tpot_ms == pytest.approx([5.0, 5.0])
    assert m.e2e_ms == pytest.approx([45.0, 45.0])
    assert all(len(g) == 3 for g in m.itl_ms)
    # Engine timestamps are copied raw, per iteration, under their own clock note; intervals are derived on read.
    assert "engine-core" in m.engine.clock
    it0 = m.engine.iterations[0]
    assert it0.queued_ts == 5_000_000.0 and it0.first_token_ts == pytest.approx(5_000_000.030)
    assert it0.num_generation_tokens == 4
    assert set(it0.model_dump()) == set(vllm_backend.ENGINE_FIELDS)  # raw fields only, nothing derived stored
    assert engine_samples.queued_to_first_token_ms(it0) == pytest.approx(30.0)
    assert engine_samples.first_to_last_token_ms(it0) == pytest.approx(15.0)
    assert engine_samples.engine_tpot_ms(it0) == pytest.approx(5.0)
    assert engine_samples.engine_problems(m.engine, 2, m.ttft_ms, m.tpot_ms) == []
    # Nothing from the engine clock leaks into the client samples or the other way round.
    client = set(m.ttft_ms) | set(m.e2e_ms)
    assert not any(abs(v) > 1e5 for v in client)
    assert m.backend.name == "vllm" and m.backend.label == "vLLM (awq)" and m.backend.device == "cuda"
    assert m.backend.settings["quantization"] == "awq" and m.backend.settings["enable_prefix_caching"] is False
    assert m.notes == [vllm_backend.stream_notes(records)[0]] and "no merges" in m.notes[0]


def test_engine_snapshot_copies_unset_timestamps_as_read_and_the_check_refuses_them():
    snap = vllm_backend.engine_snapshot(FakeRequestStateStats(num_generation_tokens=3, queued_ts=7.0))
    assert snap.queued_ts == 7.0 and snap.first_token_ts == 0.0  # 0.0: RequestStateStats' "never set"
    samples = engine_samples.EngineSamples(clock="c", iterations=[snap])
    problems = engine_samples.engine_problems(samples, 1, [10.0], [5.0])
    assert any("every timestamp set" in p for p in problems) and any("first_token_latency" in p for p in problems)
    assert vllm_backend.engine_snapshot(None) is None


def test_engine_snapshot_of_a_metrics_object_without_the_fields_is_a_bench_error():
    with pytest.raises(BenchError, match="no numeric queued_ts.*vLLM 0.12/0.20"):
        vllm_backend.engine_snapshot(SimpleNamespace(num_generation_tokens=3))


def test_engine_log_line_derives_medians_from_raw_timestamps():
    e = engine_samples.EngineTimestamps(queued_ts=1.0, scheduled_ts=1.001, first_token_ts=1.010, last_token_ts=1.040,
                                        first_token_latency=0.012, num_generation_tokens=4)
    line = vllm_backend.engine_log_line(engine_samples.EngineSamples(clock="c", iterations=[e, None]), [10.1])
    assert line == ("engine clock: 1 of 2 requests with timestamps; TPOT median 10.000 ms (client 10.100 ms); "
                    "queued -> first token median 10.000 ms")


def test_no_metrics_gives_no_engine_block_and_a_note():
    clock = FakeClock()
    s = FakeAsyncLLMStream(clock, [1, 1], [0.01, 0.01])
    rec = _run(vllm_backend.consume_stream(lambda: s, "r", clock=clock))
    rec.metrics = None
    wl = _workload(output_len=2, iterations=1, warmup=0)
    ekw = vllm_args.engine_kwargs("/x", wl, argparse.Namespace(quantization="awq_marlin"))
    m = vllm_backend.assemble_measurement([rec], wl, ekw, vllm_args.sampling_kwargs(wl, argparse.Namespace()),
                                          {}, "0.12.0", (9, 0))
    assert m.engine is None and any("metrics" in n for n in m.notes)
    assert m.backend.label == "vLLM (awq_marlin)"


def test_merged_outputs_are_noted():
    clock = FakeClock()
    s = FakeAsyncLLMStream(clock, [1, 2, 1], [0.01, 0.01, 0.01])
    rec = _run(vllm_backend.consume_stream(lambda: s, "r", clock=clock))
    notes = vllm_backend.stream_notes([rec])
    assert len(notes) == 1 and "1 of 1" in notes[0] and "at most 2 tokens" in notes[0]


# --------------------------------------------------------------------------- the session (warm-up, ids, Ctrl-C)


def _describe(engine):
    return {"quantization": "awq"}


def test_session_warms_up_with_the_same_shapes_and_uses_distinct_request_ids():
    clock = FakeClock()
    wl = _workload(output_len=4, warmup=2, iterations=3)
    engine = FakeAsyncLLM(clock, n=4)
    progress = IterationProgress(total=3)
    prompt, sampling = object(), object()
    records, resolved = _run(vllm_backend.run_session(lambda: engine, _describe, prompt, sampling, wl, progress,
                                                      lambda e: BenchError(str(e))))
    assert len(engine.calls) == 5 and len(records) == 3
    assert all(p is prompt and s is sampling for p, s, _ in engine.calls)  # same shapes for warm-up
    ids = [rid for _, _, rid in engine.calls]
    assert len(set(ids)) == 5 and sum("warmup" in i for i in ids) == 2
    assert progress.warmup_total == 2 and progress.warmup_done == 2 and progress.done == 3
    assert engine.shutdown_calls == 1 and resolved == {"quantization": "awq"}


def test_session_shuts_down_after_a_wrong_token_count():
    clock = FakeClock()
    wl = _workload(output_len=5, warmup=0, iterations=2)
    engine = FakeAsyncLLM(clock, n=4)  # streams 4 tokens, the workload wants 5
    with pytest.raises(BenchError, match="exactly 5"):
        _run(vllm_backend.run_session(lambda: engine, _describe, None, None, wl, IterationProgress(total=2),
                                      lambda e: BenchError(str(e))))
    assert engine.shutdown_calls == 1


def test_engine_start_failure_becomes_a_bench_error():
    wl = _workload()

    def fail():
        raise ValueError("Quantization method specified in the model config (awq) does not match")

    ekw = vllm_args.engine_kwargs("/x", wl, argparse.Namespace(quantization="awq_marlin"))
    model = SimpleNamespace(model_id="tiny")
    with pytest.raises(BenchError, match="could not start an engine.*does not match"):
        _run(vllm_backend.run_session(fail, _describe, None, None, wl, IterationProgress(total=1),
                                      lambda e: vllm_backend._engine_start_error(e, ekw, model)))


@pytest.fixture
def sigint_raises():
    """The Ctrl-C tests send themselves SIGINT: it must raise KeyboardInterrupt even if pytest was started with
    SIGINT ignored (nohup, a background job)."""
    with sigint_raises_keyboard_interrupt():
        yield


def test_ctrl_c_during_measured_iterations_propagates_aborts_and_shuts_down(sigint_raises):
    """SIGINT mid-stream: KeyboardInterrupt leaves asyncio.run, the open stream is closed, engine shut down."""
    clock = FakeClock()
    wl = _workload(output_len=4, warmup=1, iterations=3)
    progress = IterationProgress(total=3)
    state = {"yields": 0}

    def on_yield(i):
        state["yields"] += 1
        if state["yields"] == 4 * 2 + 2:  # warm-up + first measured done, 2 tokens into the second
            signal.raise_signal(signal.SIGINT)

    engine = FakeAsyncLLM(clock, n=4, on_yield=on_yield)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(vllm_backend.run_session(lambda: engine, _describe, None, None, wl, progress,
                                             lambda e: BenchError(str(e))))
    assert progress.warmup_done == 1 and progress.done == 1  # what the driver reports
    assert engine.shutdown_calls == 1
    assert engine.streams[-1].closed  # in-flight request's stream closed (vLLM aborts it there)
    assert len(engine.streams) == 3  # nothing submitted after the interrupt


def test_engine_death_after_ctrl_c_is_reported_as_the_interrupt(sigint_raises):
    """Ctrl-C also kills vLLM's engine-core process; its error must not hide the interrupt."""
    clock = FakeClock()
    wl = _workload(output_len=4, warmup=0, iterations=2)

    class EngineDeadError(Exception):
        pass

    def on_yield(i):
        if i == 1:
            signal.raise_signal(signal.SIGINT)  # the cancel is requested (not yet delivered) ...
            raise EngineDeadError("engine core died")  # ... and the engine's failure arrives first

    engine = FakeAsyncLLM(clock, n=4, on_yield=on_yield)
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(vllm_backend.run_session(lambda: engine, _describe, None, None, wl, IterationProgress(total=2),
                                             lambda e: BenchError(str(e))))
    assert engine.shutdown_calls == 1


# --------------------------------------------------------------------------- argument rules


@pytest.mark.parametrize("quant,cap,ok", [
    ("awq_marlin", (7, 5), False),  # T4
    ("awq_marlin", (7, 0), False),  # V100
    ("awq_marlin", (8, 0), True),  # A100
    ("awq_marlin", (8, 6), True),
    ("awq_marlin", (9, 0), True),  # H100/H200
    ("awq", (7, 5), True),
    ("awq", (7, 0), False),
    ("awq", (6, 1), False),
    ("awq", (9, 0), True),
])
def test_capability_rule(quant, cap, ok):
    if ok:
        rules.check_capability(quant, cap, "GPU X")
        return
    with pytest.raises(BenchError) as err:
        rules.check_capability(quant, cap, "GPU X")
    msg = str(err.value)
    need = "8.0" if quant == "awq_marlin" else "7.5"
    assert need in msg and f"{cap[0]}.{cap[1]}" in msg and "GPU X" in msg


def test_vllm_0_20_runs_marlin_on_a_t4_and_still_refuses_below_turing():
    assert rules.vllm_series("0.20.0") == "0.20" and rules.vllm_series("0.12.0") == "0.12"
    assert rules.vllm_series("0.99.1") == rules.vllm_series(None) == "0.12"  # no table: the study's rule
    rules.check_capability("awq_marlin", (7, 5), "Tesla T4", "0.20")
    with pytest.raises(BenchError, match=r"vLLM 0.20's awq_marlin kernel needs compute capability >= 7.5.*7.0"):
        rules.check_capability("awq_marlin", (7, 0), "Tesla V100", "0.20")
    with pytest.raises(BenchError, match="--vllm 0.20"):  # the 0.12 refusal names the way out
        rules.check_capability("awq_marlin", (7, 5), "Tesla T4", "0.12")


def test_marlin_refusal_on_a_t4_says_what_to_do():
    with pytest.raises(BenchError) as err:
        rules.check_capability("awq_marlin", (7, 5), "Tesla T4")
    msg = str(err.value)
    assert "Tesla T4" in msg and "--quantization awq" in msg and "Ampere" in msg


def test_measure_refuses_marlin_on_a_t4_before_building_an_engine(monkeypatch, tmp_path):
    monkeypatch.setattr(vllm_backend, "gpu_capability", lambda: ((7, 5), "Tesla T4"))

    def no_engine(*a, **k):
        raise AssertionError("an engine must not be built")

    monkeypatch.setattr(vllm_backend, "make_engine_args", no_engine)
    model = SimpleNamespace(path=str(tmp_path), model_id="Qwen/Qwen3-8B-AWQ", config={})
    with pytest.raises(BenchError, match="awq_marlin kernel needs compute capability >= 8.0.*Tesla T4"):
        vllm_backend.measure(_workload(), model, list(range(32)), argparse.Namespace(quantization="awq_marlin"),
                             IterationProgress(total=3))
    with pytest.raises(BenchError, match="Tesla T4"):
        vllm_backend.preflight(argparse.Namespace(quantization="awq_marlin", device="cuda"))
    assert vllm_backend.preflight(argparse.Namespace(quantization="awq", device="cuda")) == ((7, 5), "Tesla T4")


def test_unknown_capability_is_refused():
    with pytest.raises(BenchError, match="compute capability"):
        rules.check_capability("awq", None)


def test_cpu_device_is_refused():
    with pytest.raises(BenchError, match="need an NVIDIA GPU"):
        rules.refuse_cpu_for_vllm("cpu")
    rules.refuse_cpu_for_vllm("cuda")
    rules.refuse_cpu_for_vllm("auto")


@pytest.mark.parametrize("q", [None, "marlin", "gptq"])
def test_quantization_must_be_explicit(q):
    with pytest.raises(BenchError, match="awq or awq_marlin"):
        vllm_args.quantization_of(argparse.Namespace(quantization=q))


def test_engine_kwargs(tmp_path):
    wl = _workload(input_len=32, output_len=128, seed=7)
    args = argparse.Namespace(quantization="awq", enforce_eager=True, seed=7, device="cuda")
    kw = vllm_args.engine_kwargs(tmp_path, wl, args)
    assert kw == {
        "model": str(tmp_path),
        "skip_tokenizer_init": True,  # no tokenizer files in the folder
        "quantization": "awq",
        "dtype": "float16",
        "seed": 7,
        "max_model_len": 160,
        "enforce_eager": True,
        "enable_prefix_caching": False,
        "disable_log_stats": False,
        "enable_log_requests": False,
        "gpu_memory_utilization": 0.9,
        "tensor_parallel_size": 1,
        "async_scheduling": False,  # vLLM 0.12.0's default, passed explicitly
    }
    (tmp_path / "tokenizer.json").write_text("{}")
    assert vllm_args.engine_kwargs(tmp_path, wl, args)["skip_tokenizer_init"] is False


def test_engine_kwargs_defaults_when_the_driver_sets_fewer_options(tmp_path):
    wl = _workload(seed=3)
    kw = vllm_args.engine_kwargs(tmp_path, wl, argparse.Namespace(quantization="awq_marlin"))
    assert kw["enforce_eager"] is False and kw["seed"] == 3 and kw["gpu_memory_utilization"] == 0.9
    assert kw["max_model_len"] == wl.input_len + wl.output_len
    kw = vllm_args.engine_kwargs(tmp_path, wl, argparse.Namespace(quantization="awq", max_model_len=4096,
                                                                  gpu_memory_utilization=0.5, enforce_eager=None))
    assert kw["max_model_len"] == 4096 and kw["gpu_memory_utilization"] == 0.5 and kw["enforce_eager"] is False
    with pytest.raises(BenchError, match="shorter than"):
        vllm_args.engine_kwargs(tmp_path, wl, argparse.Namespace(quantization="awq", max_model_len=10))


@pytest.mark.parametrize("asked,expected", [(None, False), ("off", False), ("on", True)])
def test_async_scheduling_is_always_explicit_and_defaults_to_the_study_version(tmp_path, asked, expected):
    args = argparse.Namespace(quantization="awq", async_scheduling=asked)
    kw = vllm_args.engine_kwargs(tmp_path, _workload(), args)
    assert kw["async_scheduling"] is expected  # never None: vLLM 0.20 would resolve None to on
    assert ("async scheduling on" in vllm_args.variant_of(kw)) is expected


def test_variant_names_every_departure_from_the_study_configuration():
    assert vllm_args.variant_of({"enforce_eager": False, "async_scheduling": False}) == []
    assert vllm_args.variant_of({"enforce_eager": True, "async_scheduling": True}) == [
        "enforce_eager (no CUDA graphs, no torch.compile)", "async scheduling on"]


def test_sampling_kwargs_ask_for_exactly_n_greedy_tokens():
    kw = vllm_args.sampling_kwargs(_workload(output_len=128, seed=5), argparse.Namespace(seed=5))
    assert kw == {"n": 1, "temperature": 0.0, "max_tokens": 128, "min_tokens": 128, "ignore_eos": True, "seed": 5,
                  "detokenize": False, "output_kind": "DELTA"}


def test_non_awq_checkpoint_is_refused():
    with pytest.raises(BenchError, match="not an AWQ checkpoint"):
        vllm_args.check_checkpoint({"model_type": "qwen3"}, "Qwen/Qwen3-8B")
    with pytest.raises(BenchError, match="'gptq'"):
        vllm_args.check_checkpoint({"quantization_config": {"quant_method": "gptq"}}, "m")
    vllm_args.check_checkpoint({"quantization_config": {"quant_method": "awq"}}, "m")


def test_max_model_len_beyond_the_model_is_refused():
    with pytest.raises(BenchError, match="max_position_embeddings"):
        vllm_args.max_position_check({"max_position_embeddings": 128}, 160, "tiny")
    vllm_args.max_position_check({"max_position_embeddings": 40960}, 160, "m")


def test_settings_record_what_was_asked_and_resolved():
    wl = _workload()
    ekw = vllm_args.engine_kwargs("/m", wl, argparse.Namespace(quantization="awq_marlin"))
    skw = vllm_args.sampling_kwargs(wl, argparse.Namespace())
    resolved = {"quantization": "awq_marlin", "enforce_eager": False, "max_model_len": 160,
                "enable_prefix_caching": False,
                "compilation": {"mode": "VLLM_COMPILE", "cudagraph_mode": "FULL_AND_PIECEWISE",
                                "cudagraph_capture_sizes": [1, 2, 4, 8]}}
    s = vllm_backend.build_settings(ekw, skw, resolved, "0.12.0")
    assert s["vllm_version"] == "0.12.0" and s["quantization"] == "awq_marlin"
    assert s["compilation_mode"] == "VLLM_COMPILE" and s["cudagraph_capture_sizes"] == [1, 2, 4, 8]
    assert s["enforce_eager"] is False and s["max_model_len"] == 160 and s["enable_prefix_caching"] is False
    assert s["engine_args"] == ekw and s["sampling_params"] == skw
    eager = vllm_backend.build_settings({**ekw, "enforce_eager": True}, skw, {}, "0.12.0")
    assert eager["compilation_mode"] == "NONE" and eager["enforce_eager"] is True


def test_resolved_settings_walk_the_named_fields_of_each_config_section():
    import dataclasses
    import enum

    class Mode(enum.IntEnum):
        VLLM_COMPILE = 3

    @dataclasses.dataclass
    class Model:
        quantization: str = "awq"
        max_model_len: int = 160  # dtype, enforce_eager, skip_tokenizer_init: not declared by this "version"
        unrelated: int = 7

    @dataclasses.dataclass
    class Compilation:
        mode: Mode = Mode.VLLM_COMPILE
        cudagraph_capture_sizes: tuple = (1, 2)

    vc = SimpleNamespace(model_config=Model(), cache_config=None, compilation_config=Compilation())
    resolved = vllm_backend.resolved_settings(vc)
    assert resolved == {"quantization": "awq", "max_model_len": 160,
                        "compilation": {"mode": "VLLM_COMPILE", "cudagraph_capture_sizes": [1, 2]}}


def test_settings_fall_back_to_what_was_asked_where_vllm_resolved_nothing_readable():
    wl = _workload()
    ekw = vllm_args.engine_kwargs("/m", wl, argparse.Namespace(quantization="awq_marlin"))
    s = vllm_backend.build_settings(ekw, vllm_args.sampling_kwargs(wl, argparse.Namespace()), {}, "0.20.0")
    for key in vllm_backend.RESOLVED_OR_ASKED:
        assert s[key] == ekw[key], key
    assert s["compilation_mode"] == "vLLM default (not readable)" and s["resolved"] == {}


def test_backend_module_imports_without_torch_or_vllm():
    import subprocess

    code = ("import sys; import bench.vllm_backend, bench.vllm_args; "
            "bad = [m for m in ('torch', 'vllm', 'numpy') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT)


def test_measurement_is_valid_results_data():
    import json

    from core.results import Backend, BenchSamples

    clock = FakeClock()
    wl = _workload(output_len=3, iterations=1, warmup=0)
    s = FakeAsyncLLMStream(clock, [1, 1, 1], [0.02, 0.01, 0.01])
    rec = _run(vllm_backend.consume_stream(lambda: s, "r", clock=clock))
    ekw = vllm_args.engine_kwargs("/m", wl, argparse.Namespace(quantization="awq"))
    m = vllm_backend.assemble_measurement([rec], wl, ekw, vllm_args.sampling_kwargs(wl, argparse.Namespace()),
                                          {"compilation": {"mode": "VLLM_COMPILE"}}, "0.12.0", (8, 0))
    back = Backend.model_validate(json.loads(json.dumps(m.backend.model_dump(mode="json"))))
    assert back.settings["compilation_mode"] == "VLLM_COMPILE" and back.settings["gpu_capability"] == "8.0"
    samples = BenchSamples(ttft_ms=m.ttft_ms, tpot_ms=m.tpot_ms, e2e_ms=m.e2e_ms, itl_ms=m.itl_ms, engine=m.engine)
    assert BenchSamples.model_validate(json.loads(samples.model_dump_json())).engine == m.engine


@dataclass
class _FakeModelConfig:
    """vLLM's config sections are dataclasses; settings.resolved reads their declared fields."""
    quantization: str
    dtype: str = "torch.float16"
    max_model_len: int = 38
    enforce_eager: bool = False
    skip_tokenizer_init: bool = True


def _fake_engine_measure(monkeypatch, tmp_path, asked: str, resolved: str):
    """measure() end to end with FakeAsyncLLM as the engine (vllm_backend.start_engine, the only GPU part) and plain
    dicts for vLLM's argument objects (no vllm here); the rest is the backend's own code, describe() included."""
    clock = FakeClock()
    wl = _workload(output_len=6, warmup=2, iterations=3)
    engine = FakeAsyncLLM(clock, n=6)
    engine.vllm_config = SimpleNamespace(model_config=_FakeModelConfig(quantization=resolved))
    monkeypatch.setattr(vllm_backend, "gpu_capability", lambda: ((9, 0), "NVIDIA H200"))
    monkeypatch.setattr(vllm_backend, "installed_version", lambda name: "0.12.0")
    monkeypatch.setattr(vllm_backend, "start_engine", lambda engine_args: engine)
    monkeypatch.setattr(vllm_backend, "make_engine_args", dict)
    monkeypatch.setattr(vllm_backend, "make_sampling_params", dict)
    monkeypatch.setattr(vllm_backend, "make_prompt", list)
    model = SimpleNamespace(path=str(tmp_path), model_id="synthetic:tiny",
                            config={"quantization_config": {"quant_method": "awq"}, "max_position_embeddings": 2048})
    progress = IterationProgress(total=3)
    args = argparse.Namespace(quantization=asked, enforce_eager=False, seed=0, device="cuda")
    return wl, engine, progress, lambda: vllm_backend.measure(wl, model, list(range(32)), args, progress)


def test_measure_end_to_end_with_the_fake_engine(monkeypatch, tmp_path):
    """What the driver gets back from measure() passes its own checks."""
    from bench.run import _check_measurement

    wl, engine, progress, measure = _fake_engine_measure(monkeypatch, tmp_path, "awq_marlin", "awq_marlin")
    m = measure()
    _check_measurement(m, wl.iterations, wl.output_len)
    assert progress.done == 3 and progress.warmup_done == 2 and engine.shutdown_calls == 1
    assert m.backend.label == "vLLM (awq_marlin)" and m.backend.settings["gpu_capability"] == "9.0"
    assert m.backend.settings["resolved"]["quantization"] == "awq_marlin"
    assert len(m.engine.iterations) == 3
    # measure() reads the real time.perf_counter (the FakeClock only drives consume_stream's own tests).
    assert all(x >= 0 for x in m.ttft_ms + m.tpot_ms + m.e2e_ms)


def test_a_run_whose_outputs_all_merged_has_no_itl_and_stops():
    """ITL is summarized over real gaps only: when vLLM merged every iteration's tokens into one output there is
    none, and the driver says so instead of writing a made-up ITL."""
    from bench.api import Measurement
    from bench.run import _check_measurement
    from core.results import Backend

    backend = Backend(name="vllm", label="vLLM (awq)", quantization="awq", dtype="float16", device="cuda")
    merged = Measurement(ttft_ms=[5.0, 5.0], tpot_ms=[1.0, 1.0], e2e_ms=[6.0, 6.0], itl_ms=[[], []], backend=backend,
                         tokens_per_output=[[2], [2]])
    with pytest.raises(BenchError, match="no inter-token gap"):
        _check_measurement(merged, iterations=2, output_len=2)
    one_gap = Measurement(ttft_ms=[5.0, 5.0], tpot_ms=[1.0, 1.0], e2e_ms=[6.0, 6.0], itl_ms=[[], [1.0]],
                          backend=backend, tokens_per_output=[[2], [1, 1]])
    _check_measurement(one_gap, iterations=2, output_len=2)


def test_measure_stops_when_vllm_resolves_another_quantization(monkeypatch, tmp_path):
    """The row must measure the kernel it names: vLLM resolving awq into awq_marlin stops it, engine shut down."""
    _wl, engine, progress, measure = _fake_engine_measure(monkeypatch, tmp_path, "awq", "awq_marlin")
    with pytest.raises(BenchError, match="asked for quantization=awq but resolved awq_marlin"):
        measure()
    assert engine.calls == [] and engine.shutdown_calls == 1 and progress.done == 0
