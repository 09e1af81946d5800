"""Every run of a configuration counts (issue 17 item 3) and the version question (issue 16 item 4): the spread
cell, the "within run-to-run spread" label, the same-lease vLLM version table, week 2 per torch version."""
from __future__ import annotations

from pathlib import Path

from kit.report import assemble_reports
from kit.report.common import (
    Loaded, Spread, WITHIN_SPREAD, group_runs, load_inputs,
)
from kit.report.vllm_rows import quotient_cell

H200 = "NVIDIA H200"
V20 = {"vllm": "0.20.0", "torch": "2.11.0"}


def _render(results: Path, reports: Path) -> tuple[str, str]:
    assemble_reports(results, reports, note=lambda _: None)
    return (reports / "week1.md").read_text(encoding="utf-8"), (reports / "week2.md").read_text(encoding="utf-8")


def _section(md: str, start: str, end: str) -> str:
    return md[md.index(start):md.index(end, md.index(start))]


def _comparison_row(w1: str, label: str, metric: str) -> str:
    section = _section(w1, "## Reproduced vs published", "### The study's key comparison")
    return next(l for l in section.split("\n") if l.startswith(f"| {label} ") and f"| {metric} " in l)


def test_a_cell_of_several_runs_is_the_median_of_their_medians_with_range_runs_and_hosts(
        tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    for i, (ttft, host) in enumerate([(8.0, "a"), (12.0, "a"), (9.0, "b"), (30.0, None)]):
        write_result_file(make_bench_result(label="vLLM (awq_marlin)", gpu=H200, ttft_ms=[ttft], tpot_ms=[5.0 + i],
                                            created_utc=f"2026-01-0{i + 1}T00:00:00Z", host=host,
                                            boot_id=None if host is None else f"boot-{host}-{i}"), res)
    w1, _ = _render(res, tmp_path / "reports")
    assert "10.50ms (8.00–30.00ms, 4 runs)" in w1  # median of 8, 9, 12, 30
    assert "6.50ms (5.00–8.00ms, 4 runs)" in w1
    assert "- Runs per cell: vLLM (awq_marlin) 4 (2 hosts + 1 run without a host record)." in w1
    # The grouping a conditions table can use: one configuration, its four runs, newest first.
    inputs = load_inputs(res, note=lambda _: None)
    [group] = group_runs(inputs.bench)
    assert list(group.cells) == ["vLLM (awq_marlin)"] and not group.variants and not group.other_stacks
    assert [r.result.summary.ttft_ms.median for r in group.cells["vLLM (awq_marlin)"].runs] == [30.0, 9.0, 12.0, 8.0]


def test_hosts_not_recorded_are_said_so(tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    for i in range(2):
        write_result_file(make_bench_result(label="transformers", gpu=H200, scale=1 + i / 10,
                                            created_utc=f"2026-01-0{i + 1}T00:00:00Z"), res)
    w1, _ = _render(res, tmp_path / "reports")
    assert "- Runs per cell: transformers 2 (hosts not recorded)." in w1


def test_one_run_shows_the_plain_number(tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    write_result_file(make_bench_result(label="transformers", gpu=H200, ttft_ms=[47.705], tpot_ms=[62.05]), res)
    w1, _ = _render(res, tmp_path / "reports")
    assert "| 47.70ms " in w1 and " runs)" not in w1[:w1.index("## Details")] and "- Runs per cell:" not in w1
    # A single run equal to the published value has no run-to-run spread, so no label.
    assert WITHIN_SPREAD not in _comparison_row(w1, "transformers", "TPOT")


def test_within_run_to_run_spread_appears_only_when_the_published_value_is_inside_the_range(
        tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    # Published transformers: TTFT 95.41, TPOT 62.05. TPOT runs 60 and 64 straddle it; TTFT runs 50 and 52 do not.
    for i, (ttft, tpot) in enumerate([(50.0, 60.0), (52.0, 64.0)]):
        write_result_file(make_bench_result(label="transformers", gpu=H200, ttft_ms=[ttft], tpot_ms=[tpot],
                                            created_utc=f"2026-01-0{i + 1}T00:00:00Z"), res)
    w1, _ = _render(res, tmp_path / "reports")
    tpot, ttft = _comparison_row(w1, "transformers", "TPOT"), _comparison_row(w1, "transformers", "TTFT")
    assert "62.00ms (60.00–64.00ms, 2 runs)" in tpot and "1.00×" in tpot and WITHIN_SPREAD in tpot
    assert "0.53×" in ttft and WITHIN_SPREAD not in ttft


def test_ratio_of_two_cells_within_spread_rule():
    awq, marlin = Spread((34.0, 36.0)), Spread((8.0, 12.0))
    assert quotient_cell(awq, marlin, 4.0) == f"3.5× (2.8–4.5×; {WITHIN_SPREAD})"  # 34/12 = 2.83 .. 36/8 = 4.5
    assert quotient_cell(awq, marlin, 6.9) == "3.5× (2.8–4.5×)"
    assert quotient_cell(Spread((34.0,)), Spread((8.0,)), 34.0 / 8.0) == "4.2×"  # no spread measured
    assert not Spread((5.0,)).contains(5.0) and Spread((4.0, 6.0)).contains(5.0)


def test_key_comparison_labels_a_published_ratio_inside_the_ratio_range(tmp_path, make_bench_result,
                                                                        write_result_file):
    res = tmp_path / "results"
    # awq 40 and 60, marlin 7 and 8: TTFT ratio range 40/8 = 5.0 .. 60/7 = 8.6 holds the published 6.9.
    for i, (awq, marlin) in enumerate([(40.0, 7.0), (60.0, 8.0)]):
        day = f"2026-01-0{i + 1}T00:00:00Z"
        write_result_file(make_bench_result(label="vLLM (awq)", gpu=H200, ttft_ms=[awq], tpot_ms=[50.0],
                                            created_utc=day), res)
        write_result_file(make_bench_result(label="vLLM (awq_marlin)", gpu=H200, ttft_ms=[marlin], tpot_ms=[5.0],
                                            created_utc=day), res)
    w1, _ = _render(res, tmp_path / "reports")
    row = next(l for l in _section(w1, "### The study's key comparison", "### vLLM versions").split("\n")
               if l.startswith("| NVIDIA H200"))
    assert f"6.7× (5.0–8.6×; {WITHIN_SPREAD})" in row  # 50 / 7.5
    assert "10.0× (10.0–10.0×)" in row  # TPOT: published 8.6 is outside


def _lease_runs(write, make, res: Path, boot: str, uuid: str, created: str) -> None:
    for version, scale in (({}, 1.0), (V20, 0.7)):
        for label in ("vLLM (awq)", "vLLM (awq_marlin)"):
            write(make(label=label, gpu=H200, scale=scale, created_utc=created, host="node-1", boot_id=boot,
                       gpu_uuid=uuid, versions=version), res)


def test_same_lease_table_with_two_vllm_versions_in_one_lease(tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    _lease_runs(write_result_file, make_bench_result, res, "boot-1", "GPU-1111", "2026-01-01T00:00:00Z")
    w1, _ = _render(res, tmp_path / "reports")
    section = _section(w1, "### vLLM versions on the same GPU, same lease", "![Week 1")
    assert "Not answered yet" not in section
    assert "#### NVIDIA H200, input 128 tokens, output 8 tokens, batch 1: GPU GPU-1111, boot boot-1; vLLM 0.12.0 vs 0.20.0" in section
    lines = section.split("\n")
    header = next(l for l in lines if l.startswith("| row"))
    assert [c.strip() for c in header.strip("|").split("|")] == [
        "row", "vLLM 0.12.0 TTFT", "vLLM 0.12.0 TPOT", "vLLM 0.20.0 TTFT", "vLLM 0.20.0 TPOT", "published TTFT",
        "published TPOT"]
    ratio = next(l for l in lines if l.startswith("| awq / awq_marlin"))
    # Published 51.78 / 7.51 and 50.12 / 5.83, read from reports/published.json.
    assert [c.strip() for c in ratio.strip("|").split("|")][-2:] == ["6.9×", "8.6×"]
    assert next(l for l in lines if l.startswith("| awq_marlin")).count("ms") == 6
    assert "- vLLM 0.20.0 / 0.12.0: awq TTFT 0.7×" in section


def test_no_same_lease_table_when_the_leases_differ(tmp_path, make_bench_result, write_result_file):
    res = tmp_path / "results"
    for label in ("vLLM (awq)", "vLLM (awq_marlin)"):
        write_result_file(make_bench_result(label=label, gpu=H200, boot_id="boot-1", host="n", gpu_uuid="GPU-1"), res)
        write_result_file(make_bench_result(label=label, gpu=H200, boot_id="boot-2", host="n", gpu_uuid="GPU-1",
                                            versions=V20), res)
        # Results without a lease record never pair, even with the same values.
        write_result_file(make_bench_result(label=label, gpu=H200, scale=0.9, created_utc="2026-01-03T00:00:00Z"),
                          res)
        write_result_file(make_bench_result(label=label, gpu=H200, scale=0.9, created_utc="2026-01-03T00:00:00Z",
                                            versions=V20), res)
    w1, _ = _render(res, tmp_path / "reports")
    section = _section(w1, "### vLLM versions on the same GPU, same lease", "![Week 1")
    assert "Not answered yet" in section and "| awq / awq_marlin" not in section


def test_transformers_cell_prefers_the_pinned_torch_and_lists_the_stand_in(tmp_path, make_bench_result,
                                                                          write_result_file):
    res = tmp_path / "results"
    write_result_file(make_bench_result(label="transformers", gpu=H200, ttft_ms=[50.0], tpot_ms=[55.0],
                                        deviating={"torch": "2.11.0"}, created_utc="2026-01-02T00:00:00Z"), res)
    write_result_file(make_bench_result(label="transformers", gpu=H200, ttft_ms=[60.0], tpot_ms=[58.0]), res)
    write_result_file(make_bench_result(label="vLLM (awq)", gpu=H200), res)
    w1, _ = _render(res, tmp_path / "reports")
    assert "60.00ms" in w1.split("\n")[5]  # the TTFT row of the first table: the pinned torch's run
    assert ("- Also measured, not in the cell: transformers on torch 2.11.0, autoawq 0.2.9, transformers 4.51.3 "
            "(torch 2.11.0 (pinned 2.9.1): a stand-in for the pinned torch): TTFT 50.00ms, TPOT 55.00ms (1 run)") in w1
    groups = group_runs(load_inputs(res, note=lambda _: None).bench)
    assert groups[0].cells["transformers"].newest.result.provenance.libraries["torch"] == "2.9.1"


def test_week2_shows_the_study_torch_beside_the_stand_in(tmp_path, make_profile_result, write_result_file):
    res = tmp_path / "results"
    write_result_file(make_profile_result(gpu=H200, deviating={"torch": "2.11.0"}, scale=0.5,
                                          created_utc="2026-01-02T00:00:00Z"), res)
    write_result_file(make_profile_result(gpu=H200), res)
    _, w2 = _render(res, tmp_path / "reports")
    pinned = w2.index("- Stack: torch 2.9.1, autoawq 0.2.9, transformers 4.51.3 (on the pinned versions)")
    stand_in = w2.index("- Stack: torch 2.11.0, autoawq 0.2.9, transformers 4.51.3; deviation from the pins: "
                        "torch 2.11.0 (pinned 2.9.1)")
    assert pinned < stand_in  # the study's torch first
    assert "## NVIDIA H200: cold phase (transformers, torch 2.11.0, input 128 tokens" in w2
    assert "### NVIDIA H200, input 128 tokens, output 1 tokens, batch 1, transformers, torch 2.9.1" in w2
    assert "### NVIDIA H200, input 128 tokens, output 1 tokens, batch 1, transformers, torch 2.11.0" in w2
