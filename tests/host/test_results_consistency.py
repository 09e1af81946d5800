"""A results file that contradicts itself is refused on load (and never written), naming the file and the field.

Each case starts from a committed H200 result (results/) and edits it the way a hand or a buggy writer would.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kit import KIT_ROOT
from core.errors import KitError
from kit.report import assemble_reports
from result_files import refused, write_json
from core.results import ResultFileError, load_result, write_result

COMMITTED = sorted((KIT_ROOT / "results").glob("bench-*.json"))


def _committed() -> dict:
    assert COMMITTED, "results/ holds no committed bench result"
    return json.loads(COMMITTED[0].read_text(encoding="utf-8"))


_write, _refused = write_json, refused


def test_every_committed_result_agrees_with_itself():
    for path in sorted((KIT_ROOT / "results").glob("*.json")):
        load_result(path)


def test_summary_median_that_is_not_the_samples_median_is_refused(tmp_path):
    data = _committed()
    data["summary"]["tpot_ms"]["median"] = 1.0
    _refused(_write(tmp_path, data), "field 'summary.tpot_ms.median' is 1.0", "median of samples.tpot_ms")


def test_fewer_samples_than_iterations_is_refused(tmp_path):
    data = _committed()
    assert data["workload"]["iterations"] == 10
    data["samples"]["ttft_ms"] = data["samples"]["ttft_ms"][:3]
    _refused(_write(tmp_path, data), "field 'samples.ttft_ms' has 3 entries", "workload.iterations is 10")


def test_an_iteration_with_too_few_gaps_is_refused(tmp_path):
    data = _committed()
    n = data["workload"]["output_len"]
    data["samples"]["itl_ms"][4] = data["samples"]["itl_ms"][4][:5]
    _refused(_write(tmp_path, data), "field 'samples.itl_ms[4]' has 5 gaps", f"give {n - 1}")


def test_e2e_that_is_not_ttft_plus_the_gaps_is_refused(tmp_path):
    data = _committed()
    data["samples"]["e2e_ms"][2] += 5.0
    _refused(_write(tmp_path, data), "field 'samples.e2e_ms[2]'", "ttft_ms[2] + the sum of itl_ms[2]")


def test_tpot_that_is_not_the_definition_is_refused(tmp_path):
    data = _committed()
    data["samples"]["tpot_ms"][7] *= 1.01
    _refused(_write(tmp_path, data), "field 'samples.tpot_ms[7]'", "(e2e_ms[7] - ttft_ms[7]) / (output_len - 1)")


def _merged_outputs(make_bench_result):
    """A vLLM-like result: 8 tokens in 6 streamed outputs (two merged), so 5 gaps per iteration."""
    outputs = [1, 1, 2, 1, 2, 1]
    gaps = [4.0, 4.5, 8.0, 4.0, 8.5]
    return make_bench_result(label="vLLM (awq)", output_len=8, ttft_ms=[20.0, 21.0], tpot_ms=[29.0 / 7] * 2,
                             samples={"itl_ms": [gaps, gaps], "tokens_per_output": [outputs, outputs],
                                      "e2e_ms": [49.0, 50.0]})


def test_merged_outputs_are_consistent_with_one_gap_per_output(tmp_path, make_bench_result):
    r = _merged_outputs(make_bench_result)
    path = write_result(r, tmp_path / "merged.json")
    assert load_result(path).samples.tokens_per_output == [[1, 1, 2, 1, 2, 1]] * 2


def test_outputs_that_do_not_sum_to_output_len_are_refused(tmp_path, make_bench_result):
    data = _merged_outputs(make_bench_result).model_dump(mode="json")
    data["samples"]["tokens_per_output"][1] = [1, 1, 1, 1, 2, 1]
    _refused(_write(tmp_path, data), "field 'samples.tokens_per_output[1]'", "output_len 8 in all")


def test_gaps_that_do_not_match_the_outputs_are_refused(tmp_path, make_bench_result):
    data = _merged_outputs(make_bench_result).model_dump(mode="json")
    data["samples"]["tokens_per_output"][0] = [1, 1, 1, 1, 1, 1, 1, 1]
    _refused(_write(tmp_path, data), "field 'samples.itl_ms[0]' has 5 gaps", "lists 8 outputs, which give 7")


def test_baseline_lists_come_as_a_pair_of_iteration_length(tmp_path):
    data = _committed()
    data["samples"]["bare_generate_ms"] = [1.0] * 10
    _refused(_write(tmp_path, data), "come as a pair")
    data["samples"]["instrumented_generate_ms"] = [1.0] * 9
    _refused(_write(tmp_path, data), "field 'samples.instrumented_generate_ms' has 9 entries")


def test_instrumented_generate_shorter_than_its_last_token_is_refused(tmp_path):
    data = _committed()
    data["samples"]["instrumented_generate_ms"] = [e - 1.0 for e in data["samples"]["e2e_ms"]]
    data["samples"]["bare_generate_ms"] = list(data["samples"]["e2e_ms"])
    _refused(_write(tmp_path, data), "field 'samples.instrumented_generate_ms[0]'", "returns after its last token")


def test_the_report_stops_instead_of_rendering_the_contradiction(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    data = _committed()
    data["summary"]["tpot_ms"]["median"] = 1.0
    bad = _write(results, data, "bad.json")
    with pytest.raises(KitError) as info:
        assemble_reports(results, tmp_path / "reports", note=lambda _: None)
    assert str(bad) in str(info.value) and "summary.tpot_ms.median" in str(info.value)
    assert not (tmp_path / "reports").exists()


def test_write_result_refuses_a_contradiction(tmp_path, make_bench_result):
    data = make_bench_result().model_dump(mode="json")
    data["summary"]["ttft_ms"]["max"] = 0.5
    r = type(make_bench_result()).model_validate(data)
    with pytest.raises(ResultFileError, match="summary.ttft_ms.max.*Nothing was written"):
        write_result(r, tmp_path / "r.json")
    assert not list(tmp_path.iterdir())


def test_sample_builder_results_agree_with_themselves(tmp_path):
    from samples import sample_set

    for path in sample_set(tmp_path):
        load_result(path)


def test_a_refused_result_keeps_its_measured_data(tmp_path, monkeypatch):
    """The bench refuses to write a result that contradicts itself into results/, and keeps it under output/."""
    from bench.run import _write_or_keep
    from core.errors import BenchError
    from samples import make_bench_result

    monkeypatch.setenv("KIT_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("KIT_OUTPUT_DIR", str(tmp_path / "output"))
    result = make_bench_result()
    result.summary.tpot_ms.median += 1.0
    with pytest.raises(BenchError, match="measured data is kept") as e:
        _write_or_keep(result)
    kept = list((tmp_path / "output" / "refused").glob("*.json"))
    assert len(kept) == 1 and str(kept[0]) in str(e.value) and not (tmp_path / "results").exists()
    assert json.loads(kept[0].read_text())["summary"]["tpot_ms"]["median"] == result.summary.tpot_ms.median
