"""Week-1 details show the harness-overhead check when a result carries CUDA-event TPOTs."""
from kit.report.samples import make_bench_result
from kit.report.week1 import device_clock_text


def test_device_clock_line_reports_the_worst_per_iteration_gap():
    r = make_bench_result(tpot_ms=[50.0, 51.0, 52.0], ttft_ms=[10.0, 10.0, 10.0], iterations=3,
                          samples={"cuda_event_tpot_ms": [50.0, 50.0, 52.0]})
    text = device_clock_text(r)
    assert "median TPOT of 50.000 ms" in text
    assert "+2.000%" in text and "(n=3)" in text


def test_device_clock_line_absent_without_cuda_events():
    r = make_bench_result()
    assert r.samples.cuda_event_tpot_ms is None
    assert device_clock_text(r) == "no CUDA-event timings"
