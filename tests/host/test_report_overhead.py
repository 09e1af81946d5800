"""Week-1 details: the harness overhead comes from a comparison that can fail (instrumented generate() against a bare
one), printed whatever its sign, in the one wording (core.results.harness_overhead_text) the run's log also uses."""
from core.results import harness_overhead_text
from kit import KIT_ROOT
from kit.report import assemble_reports
from samples import make_bench_result


def overhead_text(r):
    return harness_overhead_text(r.samples.instrumented_generate_ms, r.samples.bare_generate_ms)


def _with_baseline(instrumented, bare):
    # ttft 10, tpot 1 over 8 tokens: e2e 17 ms; the instrumented generate() returns after its last token
    n = len(bare)
    return make_bench_result(ttft_ms=[10.0] * n, tpot_ms=[1.0] * n, output_len=8,
                             samples={"instrumented_generate_ms": instrumented, "bare_generate_ms": bare})


def test_no_baseline_gives_no_overhead_text():
    r = make_bench_result()
    assert r.samples.bare_generate_ms is None and overhead_text(r) is None


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
    shown = [g.cells["transformers"].newest.result
             for g in group_runs(load_inputs(KIT_ROOT / "results", note=lambda _: None).bench) if "transformers" in g.cells]
    assert len(lines) == len(shown) >= 1
    for line, result in zip(lines, shown):
        assert ("not measured by this run" in line) == (result.samples.bare_generate_ms is None), line
        if result.samples.bare_generate_ms is not None:
            assert "median " in line and "per iteration" in line
    assert "bounds the harness" not in week1
    assert "- Device clock:" not in week1  # CUDA-event TPOTs agreed with the host clock by construction: removed


def test_the_progress_thread_run_is_listed_as_a_variant_not_in_a_cell(tmp_path):
    """KIT_PROGRESS_POLL_S is gone; the run that measured the polling thread's cost stays, as a variant beside the
    study configuration's runs."""
    assemble_reports(KIT_ROOT / "results", tmp_path, note=lambda _: None)
    week1 = (tmp_path / "week1.md").read_text(encoding="utf-8")
    rows = [l for l in week1.splitlines() if l.startswith("| progress polled from a thread every 0.2 s")]
    assert len(rows) == 1 and "TPOT" in rows[0]


def test_no_document_claims_the_cuda_events_bound_the_overhead():
    for doc in ("README.md", "docs/results-format.md", "reports/week1.md"):
        text = (KIT_ROOT / doc).read_text(encoding="utf-8")
        assert "bounds the harness" not in text and "to measure the harness's own overhead" not in text, doc
        assert "sync costs nothing measurable" not in text, doc
