"""Week-1 details: the harness overhead comes from a comparison that can fail (instrumented generate() against a bare
one), printed whatever its sign; the CUDA-event TPOT is shown without claiming to bound anything."""
from kit import KIT_ROOT
from kit.report import assemble_reports
from samples import make_bench_result
from kit.report.week1 import device_clock_text, overhead_text


def _with_baseline(instrumented, bare):
    # ttft 10, tpot 1 over 8 tokens: e2e 17 ms; the instrumented generate() returns after its last token
    n = len(bare)
    return make_bench_result(ttft_ms=[10.0] * n, tpot_ms=[1.0] * n, output_len=8,
                             samples={"instrumented_generate_ms": instrumented, "bare_generate_ms": bare})


def test_device_clock_line_reports_the_worst_per_iteration_gap_and_claims_no_bound():
    r = make_bench_result(tpot_ms=[50.0, 51.0, 52.0], ttft_ms=[10.0, 10.0, 10.0], iterations=3,
                          samples={"cuda_event_tpot_ms": [50.0, 50.0, 52.0]})
    text = device_clock_text(r)
    assert "median TPOT of 50.000 ms" in text
    assert "+2.000%" in text and "(n=3)" in text
    assert "by construction" in text and "bound" not in text


def test_device_clock_line_absent_without_cuda_events():
    r = make_bench_result()
    assert r.samples.cuda_event_tpot_ms is None
    assert device_clock_text(r) == "no CUDA-event timings"


def test_overhead_is_instrumented_minus_bare_per_iteration():
    text = overhead_text(_with_baseline([20.0, 18.0, 21.0], [19.0, 20.0, 20.0]))
    # differences +1, -2, +1 ms; +5.263%, -10%, +5%
    assert "median +1.000 ms (+5.000%)" in text
    assert "per iteration -2.000 to +1.000 ms (-10.000% to +5.263%)" in text and "n=3" in text


def test_overhead_is_printed_even_when_the_bare_run_was_slower():
    text = overhead_text(_with_baseline([18.0, 18.0], [20.0, 20.0]))
    assert "median -2.000 ms (-10.000%)" in text


def test_committed_results_say_whether_they_measured_the_overhead(tmp_path):
    """Each shown transformers run: its measured overhead when it has the bare baseline, else "not measured"."""
    from kit.report.common import group_runs, load_inputs

    assemble_reports(KIT_ROOT / "results", tmp_path, note=lambda _: None)
    week1 = (tmp_path / "week1.md").read_text(encoding="utf-8")
    lines = [l for l in week1.splitlines() if l.startswith("- Harness overhead: ")]
    shown = [g.latest["transformers"].result for g in group_runs(load_inputs(KIT_ROOT / "results", note=lambda _: None).bench)
             if "transformers" in g.latest]
    assert len(lines) == len(shown) >= 1
    for line, result in zip(lines, shown):
        assert ("not measured by this run" in line) == (result.samples.bare_generate_ms is None), line
        if result.samples.bare_generate_ms is not None:
            assert "median " in line and "per iteration" in line
    assert "bounds the harness" not in week1


def test_no_document_claims_the_cuda_events_bound_the_overhead():
    for doc in ("README.md", "docs/results-format.md", "reports/week1.md"):
        text = (KIT_ROOT / doc).read_text(encoding="utf-8")
        assert "bounds the harness" not in text and "to measure the harness's own overhead" not in text, doc
        assert "sync costs nothing measurable" not in text, doc
