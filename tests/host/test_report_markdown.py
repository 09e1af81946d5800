"""The markdown table formatter and the cell formats."""
from __future__ import annotations

import pytest
import tabulate as tabulate_module

from kit.report.common import ms, pipe_table, ratio
from kit.report.week2 import split_totals
from kit.report.published import is_same_gpu, load_published
from profiler_table import parse_profiler_table, parse_time_us, top_ops_from_table


def test_pipe_table_is_the_seed_layout_whatever_tabulate_is_set_to(monkeypatch):
    """Columns as wide as their widest cell, one space either side, counted in code points: also when wcwidth is
    importable (here a double that would count every character as two columns) and with tabulate's own defaults
    changed, which pipe_table restores afterwards."""
    headers, rows = ["Backend", "TPOT", "Ratio"], [["vLLM (awq)", "50.12ms", "0.50×"], ["—", "  5.83ms", "a → b"]]
    expected = [
        "| Backend    |    TPOT | Ratio |",
        "|:-----------|--------:|:------|",
        "| vLLM (awq) | 50.12ms | 0.50× |",
        "| —          |  5.83ms | a → b |",
    ]
    assert pipe_table(headers, rows, align="lrl").split("\n") == expected

    class DoubleWidth:
        @staticmethod
        def wcswidth(text):
            return 2 * len(text)

    monkeypatch.setattr(tabulate_module, "wcwidth", DoubleWidth)
    settings = {"WIDE_CHARS_MODE": True, "MIN_PADDING": 2}
    for name, value in settings.items():
        monkeypatch.setattr(tabulate_module, name, value)
    assert pipe_table(headers, rows, align="lrl").split("\n") == expected
    assert {name: getattr(tabulate_module, name) for name in settings} == settings


def test_pipe_table_right_alignment_and_escaping():
    text = pipe_table(["name", "value"], [["a|b", "1.00"], ["c", "10.00"]], align="lr")
    assert text.split("\n") == [
        "| name | value |",
        "|:-----|------:|",
        "| a\\|b |  1.00 |",
        "| c    | 10.00 |",
    ]
    with pytest.raises(ValueError):
        pipe_table(["a", "b"], [["only one"]])
    with pytest.raises(ValueError):
        pipe_table(["a", "b"], [])


def test_cell_formats():
    assert ms(51.78) == "51.78ms"
    assert ms(7.5) == "7.50ms"
    assert ms(0.004) == "0.00ms"
    assert ms(None) == "—"
    assert ratio(25.0, 50.0) == "0.50×"


def test_gpu_name_matching():
    names = load_published().week1.same_gpu_names
    assert is_same_gpu("NVIDIA A100-SXM4-80GB", names)
    assert is_same_gpu("a100-sxm4-80gb", names)
    assert not is_same_gpu("NVIDIA A100-SXM4-40GB", names)
    assert not is_same_gpu("NVIDIA H200", names)
    assert not is_same_gpu(None, names)
    assert is_same_gpu("Tesla T4", load_published().week2.same_gpu_names)


def test_profiler_table_parser_on_the_published_table():
    table = load_published().week2.table
    rows = parse_profiler_table(table)
    assert len(rows) == 10
    assert rows[1].name == "WQLinearMMFunction"
    assert rows[1].cells["Self CUDA"] == "101.457ms"
    assert rows[1].cells["# of Calls"] == "252"
    assert rows[4].name == "cutlass::Kernel2<cutlass_75_wmma_tensorop_f16_s..."
    assert parse_time_us("2.782s") == pytest.approx(2.782e6)
    assert parse_time_us("406.231us") == pytest.approx(406.231)
    assert parse_time_us("0 b") is None
    column, ops = top_ops_from_table(table, 3)
    assert column == "self CUDA time"
    # 'Unrecognized' (CUPTI overhead) is left out of the plot data; ties keep a fixed order.
    assert ops == [("WQLinearMMFunction", pytest.approx(101.457)), ("awq_gemm_kernel", pytest.approx(101.457)),
                   ("aten::mm", pytest.approx(5.092))]


def test_published_top_operators_are_the_seed_tables():
    """reports/published.json's week-2 top operators (the plot's published bars) are the seed table's, read once."""
    week2 = load_published().week2
    column, ops = top_ops_from_table(week2.table, 100)
    assert week2.top_ops_column == column == "self CUDA time"
    assert week2.top_ops == ops and len(ops) == 9


def test_split_totals_drops_trailing_total_lines_only():
    table = "---  ---\nName  x\nrow  1\n---  ---\nSelf CPU time total: 1.000s\nSelf CUDA time total: 2.000ms\n"
    assert split_totals(table) == "---  ---\nName  x\nrow  1\n---  ---"
    assert split_totals("---\nSelf CPU time total: in a row name\n---") == "---\nSelf CPU time total: in a row name\n---"
