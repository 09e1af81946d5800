"""Report assembly from results: grouping, winners, comparison words, details, week 2, determinism."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from kit.report import OUTPUTS, assemble_reports
from samples import sample_set


def _render(results: Path, reports: Path) -> tuple[str, str]:
    notes: list[str] = []
    written = assemble_reports(results, reports, note=notes.append)
    assert [p.name for p in written] == list(OUTPUTS)
    return (reports / "week1.md").read_text(encoding="utf-8"), (reports / "week2.md").read_text(encoding="utf-8")


def _tables(md: str) -> list[list[list[str]]]:
    """Every seed-format week-1 table in a report, as rows of stripped cells."""
    out, lines = [], md.split("\n")
    for i, line in enumerate(lines):
        if line.startswith("| **Backend** |"):
            rows = [lines[i]] + lines[i + 2:i + 5]
            out.append([[c.strip() for c in r.strip("|").split("|")] for r in rows])
    return out


def test_one_table_per_gpu_and_workload(tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    for label in ("vLLM (awq)", "vLLM (awq_marlin)", "transformers"):
        write_result_file(make_bench_result(label=label), res)
    write_result_file(make_bench_result(label="transformers", gpu="NVIDIA H200", scale=0.5), res)
    write_result_file(make_bench_result(label="transformers", input_len=512, scale=2.0), res)
    w1, _ = _render(res, tmp_path / "reports")
    tables = _tables(w1)
    assert len(tables) == 4  # A100 in 128, A100 in 512, H200, then the published one
    headings = re.findall(r"^## Also measured: (.*)$", w1, flags=re.M)
    assert headings == ["NVIDIA A100-SXM4-80GB, input 512 tokens, output 8 tokens, batch 1",
                        "NVIDIA H200, input 128 tokens, output 8 tokens, batch 1"]
    assert tables[0][2][1:] == ["51.78ms", "7.51ms", "95.41ms"]  # sample medians = the study's numbers
    assert tables[1][2][1:] == ["—", "—", "190.82ms"]
    assert tables[2][2][1:] == ["—", "—", "47.70ms"]
    assert w1.index("## Published (A100-SXM4-80GB)") > w1.index("## Also measured: NVIDIA H200")
    assert "Nothing has been reproduced for vLLM (awq) and vLLM (awq_marlin) on NVIDIA H200 with this workload" in w1


def test_every_run_of_a_configuration_counts_and_is_listed_newest_first(tmp_path, make_bench_result,
                                                                        write_result_file):
    res = tmp_path / "results"
    # 23:00 at UTC-2 is 01:00Z on Jan 2: later than 00:30Z, although its text sorts first.
    newer = make_bench_result(label="transformers", ttft_ms=[10.0], tpot_ms=[5.0], created_utc="2026-01-01T23:00:00-02:00")
    older = make_bench_result(label="transformers", ttft_ms=[20.0], tpot_ms=[6.0], created_utc="2026-01-02T00:30:00Z")
    write_result_file(newer, res, "b-newer.json")
    write_result_file(older, res, "c-older.json")
    # Same created_utc: the file name orders them (later name first).
    tie1 = make_bench_result(label="vLLM (awq)", ttft_ms=[30.0], tpot_ms=[7.0], run_id="t1")
    tie2 = make_bench_result(label="vLLM (awq)", ttft_ms=[40.0], tpot_ms=[8.0], run_id="t2")
    write_result_file(tie1, res, "x-tie.json")
    write_result_file(tie2, res, "y-tie.json")
    w1, _ = _render(res, tmp_path / "reports")
    table = _tables(w1)[0]
    assert table[2][1:] == ["35.00ms (30.00–40.00ms, 2 runs)", "—", "15.00ms (10.00–20.00ms, 2 runs)"]
    assert table[3][1:] == ["7.50ms (7.00–8.00ms, 2 runs)", "—", "5.50ms (5.00–6.00ms, 2 runs)"]
    assert "Superseded" not in w1
    details = w1[w1.index("## Details"):]
    assert details.index("  - `b-newer.json` (created 2026-01-01T23:00:00-02:00, host not recorded): TTFT 10.00ms") < \
        details.index("  - `c-older.json` (created 2026-01-02T00:30:00Z, host not recorded): TTFT 20.00ms")
    assert details.index("  - `y-tie.json`") < details.index("  - `x-tie.json`")


def test_comparison_says_when_the_gpu_differs(tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    write_result_file(make_bench_result(label="transformers", ttft_ms=[190.82], tpot_ms=[31.02]), res)
    write_result_file(make_bench_result(label="transformers", gpu="NVIDIA H200", ttft_ms=[47.705], tpot_ms=[62.05]), res)
    write_result_file(make_bench_result(label="vLLM (awq)", gpu=None, ttft_ms=[517.8], tpot_ms=[501.2]), res)
    w1, _ = _render(res, tmp_path / "reports")
    section = w1[w1.index("## Reproduced vs published"):w1.index("## Details")]
    assert ("| transformers      | TTFT   |   190.82ms |   95.41ms | 2.00× | same GPU as published "
            "(NVIDIA A100-SXM4-80GB); synthetic weights |") in section
    assert "| transformers      | TPOT   |    31.02ms |   62.05ms | 0.50× |" in section
    h200 = section[section.index("### NVIDIA H200"):section.index("### CPU")]
    assert "| 0.50× | different GPU (NVIDIA H200 vs A100-SXM4-80GB): not a reproduction; synthetic weights |" in h200
    assert "| 1.00× | different GPU (NVIDIA H200 vs A100-SXM4-80GB): not a reproduction" in h200
    assert "| vLLM (awq)        | TTFT   |          — |   51.78ms |     — | nothing reproduced" in h200
    cpu = section[section.index("### CPU"):]
    assert "| 10.00× | CPU run vs the published A100-SXM4-80GB: not a reproduction; synthetic weights |" in cpu


def test_details_statistics_workload_floor_and_provenance(tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    r = make_bench_result(
        label="vLLM (awq_marlin)", ttft_ms=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], tpot_ms=[9.7] * 10,
        roofline={"bytes_per_decode_step": 4_850_000_000, "bandwidth_gb_s": 1000.0, "bytes_breakdown": {},
                  "bandwidth_method": "d2d copy"},
        workload={"warmup": 3, "seed": 1234, "synthetic": False, "model_source": "hub", "synthetic_config": None,
                  "revision": "main", "resolved_revision": "abc123"},
        provenance={"kit_commit": "feedfacecafebeef00000000", "kit_dirty": True, "image_id": "sha256:1234abcd",
                    "lock_hash": "sha256:9999", "deviations": ["torch 2.9.1 (pinned 2.9.0)"], "python": "3.12.3 (main)",
                    "label": "reference run",
                    "gpu": {"name": "NVIDIA A100-SXM4-80GB", "memory_total_mib": 81559, "driver": "550.54.15",
                            "cuda_runtime": "12.8", "compute_capability": "8.0"}},
    )
    write_result_file(r, res, "run.json")
    write_result_file(make_bench_result(label="transformers", roofline=False), res, "no-roofline.json")
    write_result_file(make_bench_result(label="vLLM (awq)", roofline={"bandwidth_gb_s": None}), res, "no-bw.json")
    w1, _ = _render(res, tmp_path / "reports")
    details = w1[w1.index("#### vLLM (awq_marlin)"):]
    details = details[:details.index("\n####")]
    assert "| median    |      5.50 |      9.70 |" in details
    assert "| p90       |      9.10 |" in details
    assert "| p99       |      9.91 |" in details
    assert "| n         |        10 |        10 |" in details
    assert ("- Workload: Qwen/Qwen3-8B-AWQ (hub, revision main, resolved abc123), real weights; input 128 tokens, "
            "output 8 tokens (EOS ignored), batch 1; warm-up 3, iterations 10, seed 1234") in details
    assert "= 4.850 ms; the median TPOT of 9.700 ms reaches **50.0%** of that floor" in details
    assert "no measured memory bandwidth, so no floor" in w1
    assert "not recorded by this run (no roofline inputs in the result)" in w1
    ref = re.search(r"#### vLLM \(awq_marlin\)\[\^(w1-\d+)\]", w1).group(1)
    footnote = re.search(rf"^\[\^{ref}\]: (.*)$", w1, flags=re.M).group(1)
    for expected in ("`run.json`", "kit commit feedfacecafe, uncommitted changes", "runner docker",
                     "sha256:1234abcd", "lock sha256:9999", "vllm 0.12.0", "torch 2.9.0",
                     "deviations from the pins: torch 2.9.1 (pinned 2.9.0)", "Python 3.12.3 on Linux",
                     "GPU NVIDIA A100-SXM4-80GB, 81559 MiB", "driver 550.54.15", "CUDA runtime 12.8",
                     "label: reference run"):
        assert expected in footnote, expected
    assert "TTFT (time to first token) runs from request submission to the first generated token" in w1
    assert "TPOT (time per output token) = (end-to-end − TTFT) / (N − 1)" in w1


def test_versions_bullets_show_disagreeing_versions_per_backend(tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    write_result_file(make_bench_result(label="vLLM (awq)"), res)
    write_result_file(make_bench_result(label="vLLM (awq_marlin)", provenance={"libraries": {"torch": "2.9.1"}}), res)
    w1, _ = _render(res, tmp_path / "reports")
    assert "  - torch 2.9.0 (vLLM (awq)); 2.9.1 (vLLM (awq_marlin))" in w1
    head = w1[:w1.index("## Published")]
    assert "- transformers" not in head  # no transformers run: no invented versions for it


def test_week2_one_block_per_phase_with_the_published_block(tmp_path, make_profile_result, write_result_file):
    res = tmp_path / "results"
    prof = make_profile_result(phases=("decode", "cold", "warm"))
    write_result_file(prof, res)
    write_result_file(make_profile_result(gpu=None, phases=("cold",)), res)
    _, w2 = _render(res, tmp_path / "reports")
    assert w2.startswith("# Week 2. Profiling\n- Device: Tesla T4\n- Phase: cold (")
    order = [m.group(1) for m in re.finditer(r"^- Phase: (\w+)", w2, flags=re.M)]
    assert order == ["cold", "warm", "decode", "cold"]  # T4 first, CPU last; phases in fixed order
    for phase in prof.phases:
        assert f"```text\n{phase.table}\n```\n- {phase.totals[0]}\n- {phase.totals[1]}\n- Diagnosis: " in w2
    assert "## CPU: cold phase" in w2
    assert "a CPU run: not comparable with the published Colab T4 table" in w2
    assert "- Device: the published GPU (Colab T4)" in w2
    published = w2[w2.index("## Published (Colab T4)"):]
    assert published.startswith("## Published (Colab T4)\n\n- Device: Colab T4\n```text\n")
    assert "- Self CPU time total: 3.392s\n- Self CUDA time total: 117.495ms" in published


def test_same_inputs_give_the_same_bytes(tmp_path):
    a, b = tmp_path / "a" / "results", tmp_path / "b" / "results"
    sample_set(a)
    # Same files written in the opposite order (different mtimes and directory order).
    b.mkdir(parents=True)
    for path in sorted(a.iterdir(), reverse=True):
        shutil.copyfile(path, b / path.name)
    assemble_reports(a, tmp_path / "a" / "reports", note=lambda _: None)
    assemble_reports(b, tmp_path / "b" / "reports", note=lambda _: None)
    assemble_reports(a, tmp_path / "a" / "reports2", note=lambda _: None)
    for name in OUTPUTS:
        first = (tmp_path / "a" / "reports" / name).read_bytes()
        assert first == (tmp_path / "b" / "reports" / name).read_bytes(), name
        assert first == (tmp_path / "a" / "reports2" / name).read_bytes(), name
    png = (tmp_path / "a" / "reports" / "week1.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert b"Software" not in png and b"matplotlib" not in png.lower()


def test_reports_link_their_plots_and_leave_no_temp_files(tmp_path):
    res = tmp_path / "results"
    sample_set(res)
    w1, w2 = _render(res, tmp_path / "reports")
    assert "](week1.png)" in w1 and "](week2.png)" in w2
    assert sorted(p.name for p in (tmp_path / "reports").iterdir()) == sorted(OUTPUTS)
    assert str(tmp_path) not in w1 + w2  # no absolute paths in reports


def test_non_result_files_are_skipped_with_a_note(tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    write_result_file(make_bench_result(), res)
    (res / "notes.json").write_text('{"what": "my own notes"}')
    (res / "list.json").write_text("[1, 2, 3]")
    (res / "README.txt").write_text("hello")
    (res / ".bench.json.tmp123").write_text("{half")  # an atomic write in progress: ignored silently
    notes: list[str] = []
    assemble_reports(res, tmp_path / "reports", note=notes.append)
    assert len(notes) == 3
    assert all(n.count("\n") == 0 for n in notes)
    assert any("notes.json" in n and "not a kit result" in n for n in notes)
    assert any("list.json" in n for n in notes) and any("README.txt" in n for n in notes)
    w1 = (tmp_path / "reports" / "week1.md").read_text(encoding="utf-8")
    assert "- Skipped: notes.json: JSON that is not a kit result" in w1
    assert ".bench.json.tmp123" not in w1


@pytest.mark.parametrize("missing", [True, False])
def test_missing_and_empty_results_folders_render_the_same(tmp_path, missing):
    res = tmp_path / "results"
    if not missing:
        res.mkdir()
    assemble_reports(res, tmp_path / "reports", note=lambda _: None)
    other = tmp_path / "other" / "results"
    other.mkdir(parents=True)
    assemble_reports(other, tmp_path / "other" / "reports", note=lambda _: None)
    for name in OUTPUTS:
        assert (tmp_path / "reports" / name).read_bytes() == (tmp_path / "other" / "reports" / name).read_bytes()


def test_unchanged_plots_are_reused_and_changed_ones_redrawn(tmp_path, monkeypatch, make_bench_result,
                                                             write_result_file):
    import kit.report.plots as plots
    from kit.report import PLOT_KEY, png_text_chunks

    res, reports = tmp_path / "results", tmp_path / "reports"
    write_result_file(make_bench_result(label="transformers"), res)
    assemble_reports(res, reports, note=lambda _: None)
    first = {name: (reports / name).read_bytes() for name in OUTPUTS}
    key1 = png_text_chunks(first["week1.png"])[PLOT_KEY]
    assert len(key1) == 64 and "Software" not in png_text_chunks(first["week1.png"])

    def must_not_draw(*args, **kwargs):
        raise AssertionError("an unchanged plot was drawn again")

    with monkeypatch.context() as m:
        m.setattr(plots, "week1_png", must_not_draw)
        m.setattr(plots, "week2_png", must_not_draw)
        assemble_reports(res, reports, note=lambda _: None)
        assert {name: (reports / name).read_bytes() for name in OUTPUTS} == first
        # New results change the week-1 plot's inputs: it must be drawn (week 2 is unchanged and reused).
        write_result_file(make_bench_result(label="vLLM (awq)", gpu="NVIDIA H200"), res)
        with pytest.raises(AssertionError, match="unchanged plot was drawn"):
            assemble_reports(res, reports, note=lambda _: None)
    assemble_reports(res, reports, note=lambda _: None)
    new = (reports / "week1.png").read_bytes()
    assert new != first["week1.png"] and png_text_chunks(new)[PLOT_KEY] != key1
    assert (reports / "week2.png").read_bytes() == first["week2.png"]
    # The reused bytes are exactly what drawing gives: compare with a fresh folder.
    assemble_reports(res, tmp_path / "fresh", note=lambda _: None)
    for name in OUTPUTS:
        assert (reports / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()


def test_a_png_without_the_right_key_is_redrawn(tmp_path, make_bench_result, write_result_file):
    res, reports = tmp_path / "results", tmp_path / "reports"
    write_result_file(make_bench_result(), res)
    assemble_reports(res, tmp_path / "fresh", note=lambda _: None)
    reports.mkdir()
    (reports / "week1.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    good = (tmp_path / "fresh" / "week2.png").read_bytes()
    (reports / "week2.png").write_bytes(good.replace(b"kit-plot-key", b"kit-plot-kez"))  # breaks the chunk CRC
    assemble_reports(res, reports, note=lambda _: None)
    for name in OUTPUTS:
        assert (reports / name).read_bytes() == (tmp_path / "fresh" / name).read_bytes()


def test_a_rerender_with_unchanged_plots_does_not_import_matplotlib(tmp_path):
    import subprocess
    import sys

    from kit import KIT_ROOT

    res, reports = tmp_path / "results", tmp_path / "reports"
    sample_set(res)
    code = ("import sys\nfrom pathlib import Path\nfrom kit.report import assemble_reports\n"
            f"assemble_reports(Path({str(res)!r}), Path({str(reports)!r}), note=lambda _: None)\n"
            "print('matplotlib' in sys.modules)\n")
    runs = [subprocess.run([sys.executable, "-c", code], cwd=KIT_ROOT, capture_output=True, text=True, timeout=120)
            for _ in range(2)]
    assert [r.stdout.strip() for r in runs] == ["True", "False"], [r.stderr for r in runs]
