"""Golden tests: the published data rendered through the report code gives the seed's own text back."""
from __future__ import annotations

import re

from ci_policy import skip_or_fail

from kit import KIT_ROOT
from kit.report import assemble_reports, week1, week2
from kit.report.published import load_published

SEED_COPY_PATH = KIT_ROOT / "reports" / "published-seed.txt"
SEED = SEED_COPY_PATH.read_text(encoding="utf-8")


def shared_seed_path(root=KIT_ROOT):
    """Where the original seed lives next to a clone (CI: ../shared/seeds relative to the clone root)."""
    return root.parent / "shared" / "seeds" / "000_da47138d1cac4b8b.txt"


def _section(text: str, start: str, end: str | None) -> list[str]:
    lines = text.split("\n")
    i = lines.index(start)
    j = lines.index(end) if end else len(lines)
    out = lines[i:j]
    while out and not out[-1].strip():
        out.pop()
    return out


def _rstrip(lines: list[str]) -> list[str]:
    return [l.rstrip() for l in lines]


def test_committed_seed_copy_is_the_shared_seed():
    shared = shared_seed_path()
    if not shared.exists():
        skip_or_fail(f"no shared seed next to this clone ({shared}); under CI the golden test must run against it")
    assert SEED_COPY_PATH.read_bytes() == shared.read_bytes(), (
        f"{SEED_COPY_PATH} differs from {shared}: copy the seed again")


def test_week1_published_block_is_the_seed_text():
    block = week1.published_block(load_published().week1)
    rendered = (week1.TITLE + "\n\n" + block).split("\n")
    expected = _section(SEED, "# Week 1. Benchmark", "# Week 2. Profiling")
    assert _rstrip(rendered) == _rstrip(expected)
    # Only trailing whitespace may differ, and only where the seed has some.
    for got, want in zip(rendered, expected):
        assert got == want or got == want.rstrip()


def test_week2_published_block_is_the_seed_text_apart_from_the_fence():
    block = week2.published_block(load_published().week2)
    lines = (week2.TITLE + "\n" + block).split("\n")
    assert lines.count("```text") == 1 and lines.count("```") == 1
    unfenced = [l for l in lines if l not in ("```text", "```")]
    expected = _section(SEED, "# Week 2. Profiling", None)
    assert _rstrip(unfenced) == _rstrip(expected)
    # Inside the fence the profiler's text is byte for byte the seed's, trailing spaces included.
    inside = lines[lines.index("```text") + 1: lines.index("```")]
    start = expected.index("- Device: Colab T4") + 1
    assert inside == expected[start:start + len(inside)]
    assert expected[start + len(inside):] == ["- Self CPU time total: 3.392s", "- Self CUDA time total: 117.495ms"]


def test_empty_results_render_the_published_data_and_say_nothing_was_reproduced(tmp_path):
    (tmp_path / "results").mkdir()
    assemble_reports(tmp_path / "results", tmp_path / "reports", note=lambda _: None)
    w1 = (tmp_path / "reports" / "week1.md").read_text(encoding="utf-8")
    w2 = (tmp_path / "reports" / "week2.md").read_text(encoding="utf-8")
    assert w1.startswith("# Week 1. Benchmark\n\n> **Nothing has been reproduced yet:**")
    seed_w1 = "\n".join(_rstrip(_section(SEED, "| **Backend** | vLLM (awq)        | vLLM (awq_marlin) | transformers      |",
                                         "# Week 2. Profiling")))
    assert seed_w1 in "\n".join(_rstrip(w1.split("\n")))
    assert "Nothing has been reproduced yet, so there is nothing to compare" in w1
    assert w2.startswith("# Week 2. Profiling\n\n> **Nothing has been reproduced yet:**")
    assert "\n".join(load_published().week2.table_lines) in w2
    assert "- Self CPU time total: 3.392s\n- Self CUDA time total: 117.495ms" in w2


def test_reproduced_week1_opens_in_the_seed_format(tmp_path, make_bench_result, write_result_file):
    results = tmp_path / "results"
    write_result_file(make_bench_result(label="transformers", gpu="NVIDIA H200"), results)
    write_result_file(make_bench_result(label="vLLM (awq_marlin)", gpu="NVIDIA H200"), results)
    assemble_reports(results, tmp_path / "reports", note=lambda _: None)
    lines = (tmp_path / "reports" / "week1.md").read_text(encoding="utf-8").split("\n")
    assert lines[0] == "# Week 1. Benchmark" and lines[1] == ""
    cells = [[c.strip() for c in l.strip("|").split("|")] for l in lines[2:7]]
    assert cells[0] == ["**Backend**", "vLLM (awq)", "vLLM (awq_marlin)", "transformers"]
    assert all(re.fullmatch(r":-+", c) for c in cells[1])
    assert [row[0] for row in cells[2:]] == ["**Model**", "**TTFT**", "**TPOT**"]
    assert cells[3][1] == cells[4][1] == "—"  # vLLM (awq) was not run: no number is invented for it
    assert all(re.fullmatch(r"\d+\.\d\dms", c) for row in cells[3:] for c in row[2:])
    assert lines[7] == "" and lines[8] == "- Device: NVIDIA H200"
    assert lines[9:14] == ["- vLLM", "  - torch 2.9.0", "  - vllm 0.12.0", "  - Python 3.12.3", "- transformers"]


def test_committed_reports_match_a_fresh_render_of_results(tmp_path):
    """reports/*.md in the repository are what `nox -s report` gives for the committed results/."""
    assemble_reports(KIT_ROOT / "results", tmp_path, note=lambda _: None)
    for name in ("week1.md", "week2.md"):
        committed = KIT_ROOT / "reports" / name
        assert committed.exists(), f"{committed} is missing: run `nox -s report` and commit reports/"
        assert committed.read_bytes() == (tmp_path / name).read_bytes(), (
            f"{committed} is stale: run `nox -s report` and commit reports/")
