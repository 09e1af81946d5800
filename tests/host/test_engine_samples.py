"""vLLM's engine timestamps are stored raw and checked on write and read; version 1 files migrate to version 2.

The cases start from committed H200 vLLM results (results/, docs/runs/) and edit them the way a hand or a buggy
writer would; the migration cases start from a version 1 copy of one of them (tests/host/data/).
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kit import KIT_ROOT
from core import engine_samples as es
from core.errors import KitError
from result_files import refused, write_json
from core.results import ResultFileError, load_result, write_result
from kit.report import assemble_reports

COMMITTED_VLLM = sorted([*(KIT_ROOT / "results").glob("bench-vllm-*.json"),
                         *(KIT_ROOT / "docs" / "runs").rglob("bench-vllm-*.json")])
V1_FIXTURE = KIT_ROOT / "tests" / "host" / "data" / "v1-bench-vllm-awq-marlin-nvidia-h200-20261129T155759Z-1fd5b4.json"
V2_COMMITTED = KIT_ROOT / "results" / V1_FIXTURE.name.removeprefix("v1-")
MIGRATE = KIT_ROOT / "tools" / "migrate_results.py"


def _vllm_result() -> dict:
    assert COMMITTED_VLLM, "no committed vLLM result"
    return json.loads(COMMITTED_VLLM[0].read_text(encoding="utf-8"))


_write, _refused = write_json, refused


def _migrate(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(MIGRATE), *args], capture_output=True, text=True, timeout=120)


# --------------------------------------------------------------------------- what is stored


def test_committed_vllm_results_store_raw_timestamps_only_and_agree_with_their_client_samples():
    assert len(COMMITTED_VLLM) >= 10
    for path in COMMITTED_VLLM:
        r = load_result(path)
        assert r.samples.engine is not None and len(r.samples.engine.iterations) == r.workload.iterations
        for stamps, tpot in zip(r.samples.engine.iterations, r.samples.tpot_ms):
            assert set(json.loads(stamps.model_dump_json())) == set(es.EngineTimestamps.model_fields)
            assert abs(es.tpot_gap_pct(tpot, stamps)) < 0.2  # the committed spread the 2% bound is set against


def test_derived_intervals_come_from_the_timestamps():
    e = es.EngineTimestamps(queued_ts=10.0, scheduled_ts=10.001, first_token_ts=10.021, last_token_ts=10.121,
                            first_token_latency=0.025, num_generation_tokens=11)
    assert es.queued_to_scheduled_ms(e) == pytest.approx(1.0)
    assert es.scheduled_to_first_token_ms(e) == pytest.approx(20.0)
    assert es.queued_to_first_token_ms(e) == pytest.approx(21.0)
    assert es.first_to_last_token_ms(e) == pytest.approx(100.0)
    assert es.engine_tpot_ms(e) == pytest.approx(10.0)
    assert es.frontend_ms(e) == pytest.approx(4.0)
    assert es.client_side_ms(25.5, e) == pytest.approx(0.5)
    assert es.tpot_gap_pct(10.1, e) == pytest.approx(1.0)
    assert es.engine_tpot_ms(e.model_copy(update={"num_generation_tokens": 1})) is None


# --------------------------------------------------------------------------- refusals


def test_a_moved_last_token_timestamp_makes_the_report_refuse_the_file(tmp_path):
    data = _vllm_result()
    data["samples"]["engine"]["iterations"][3]["last_token_ts"] += 0.05  # 50 ms more decode: ~6-8% on TPOT
    results = tmp_path / "results"
    bad = _write(results, data, "bad.json")
    with pytest.raises(KitError) as info:
        assemble_reports(results, tmp_path / "reports", note=lambda _: None)
    message = str(info.value)
    assert str(bad) in message and "\n" not in message
    assert "field 'samples.engine.iterations[3]' gives an engine TPOT" in message and "samples.tpot_ms[3]" in message
    assert "within 2%" in message
    assert not (tmp_path / "reports").exists()


def test_the_report_command_prints_the_paragraph_without_a_traceback(tmp_path):
    data = _vllm_result()
    data["samples"]["engine"]["iterations"][0]["first_token_ts"] -= 0.05
    results = tmp_path / "results"
    bad = _write(results, data, "bad.json")
    proc = subprocess.run([sys.executable, "-m", "kit", "report", "--results-dir", str(results), "--reports-dir",
                           str(tmp_path / "reports")], cwd=KIT_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"error: {bad}: the result contradicts itself: field 'samples.engine.iterations[0]'" in proc.stderr


def test_out_of_order_timestamps_are_refused(tmp_path):
    data = _vllm_result()
    it = data["samples"]["engine"]["iterations"][2]
    it["queued_ts"], it["scheduled_ts"] = it["scheduled_ts"], it["queued_ts"]
    _refused(_write(tmp_path, data), "field 'samples.engine.iterations[2]'",
             "queued_ts <= scheduled_ts <= first_token_ts <= last_token_ts")


def test_an_unset_timestamp_is_refused(tmp_path):
    data = _vllm_result()
    data["samples"]["engine"]["iterations"][1]["scheduled_ts"] = 0.0
    _refused(_write(tmp_path, data), "field 'samples.engine.iterations[1]'", "every timestamp set")


def test_a_first_token_latency_longer_than_the_client_ttft_is_refused(tmp_path):
    data = _vllm_result()
    it = data["samples"]["engine"]["iterations"][5]
    it["first_token_latency"] = (data["samples"]["ttft_ms"][5] + 2 * es.ENGINE_NESTED_SLACK_MS) / 1e3
    _refused(_write(tmp_path, data), "field 'samples.engine.iterations[5].first_token_latency'",
             "longer than samples.ttft_ms[5]", "the client submits before")


def test_an_engine_queue_to_first_token_longer_than_the_frontend_latency_is_refused(tmp_path):
    data = _vllm_result()
    it = data["samples"]["engine"]["iterations"][4]
    it["first_token_latency"] = (it["first_token_ts"] - it["queued_ts"]) - 2e-3
    _refused(_write(tmp_path, data), "field 'samples.engine.iterations[4]' gives queued -> first token",
             "inside the frontend's")


def test_a_non_positive_first_token_latency_is_refused(tmp_path):
    data = _vllm_result()
    data["samples"]["engine"]["iterations"][0]["first_token_latency"] = 0.0
    _refused(_write(tmp_path, data), "iterations[0].first_token_latency' is 0.0", "positive interval")


def test_engine_iterations_must_match_the_workload(tmp_path):
    data = _vllm_result()
    data["samples"]["engine"]["iterations"].pop()
    _refused(_write(tmp_path, data), "field 'samples.engine.iterations' has 9 entries", "workload.iterations is 10")


def test_a_stored_derived_value_is_an_unknown_field(tmp_path):
    data = _vllm_result()
    data["samples"]["engine"]["iterations"][0]["tpot_ms"] = 5.0
    with pytest.raises(ResultFileError, match=r"samples\.engine\.iterations\.0\.tpot_ms"):
        load_result(_write(tmp_path, data))


def test_write_result_refuses_engine_timestamps_that_do_not_fit_the_client(tmp_path):
    r = load_result(COMMITTED_VLLM[0])
    stamps = r.samples.engine.iterations[0]
    r.samples.engine.iterations[0] = stamps.model_copy(update={"last_token_ts": stamps.last_token_ts + 1.0})
    with pytest.raises(ResultFileError, match=r"engine TPOT.*Nothing was written"):
        write_result(r, tmp_path / "r.json")
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- migration


def test_migrating_a_version_1_copy_reproduces_the_committed_version_2_file(tmp_path):
    copy = tmp_path / V2_COMMITTED.name
    shutil.copy(V1_FIXTURE, copy)
    assert json.loads(copy.read_text())["schema_version"] == 1
    proc = _migrate(str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert f"{copy}: migrated to version 2" in proc.stdout
    assert copy.read_bytes() == V2_COMMITTED.read_bytes()
    again = _migrate(str(copy))  # idempotent
    assert again.returncode == 0 and f"{copy}: already version 2, left alone" in again.stdout
    assert copy.read_bytes() == V2_COMMITTED.read_bytes()


def test_a_version_1_file_is_refused_on_load_naming_the_migration(tmp_path):
    copy = shutil.copy(V1_FIXTURE, tmp_path / "old.json")
    with pytest.raises(ResultFileError) as info:
        load_result(Path(copy))
    message = str(info.value)
    assert "field 'schema_version' is 1" in message and f"python tools/migrate_results.py {copy}" in message
    assert "\n" not in message


def test_a_tampered_derived_value_refuses_the_migration_and_writes_nothing(tmp_path):
    data = json.loads(V1_FIXTURE.read_text(encoding="utf-8"))
    data["samples"]["engine"]["iterations"][6]["tpot_ms"] *= 1.001
    bad = _write(tmp_path, data, "tampered.json")
    good = shutil.copy(V1_FIXTURE, tmp_path / "good.json")
    before = bad.read_bytes()
    proc = _migrate(str(tmp_path))
    assert proc.returncode == 1
    assert bad.read_bytes() == before
    paragraph = next(line for line in proc.stderr.splitlines() if str(bad) in line)
    assert "field 'samples.engine.iterations[6].tpot_ms'" in paragraph and "Nothing was written" in paragraph
    assert "Traceback" not in proc.stderr
    assert json.loads(Path(good).read_text())["schema_version"] == 2  # the other file still migrates


def test_a_version_1_file_with_todays_optional_fields_migrates(tmp_path):
    """main writes provenance.host, gpu.uuid and conditions into version 1 files today."""
    data = json.loads(V1_FIXTURE.read_text(encoding="utf-8"))
    data["provenance"]["host"] = {"cpu_model": "Intel Xeon", "cpu_cores": 16, "hostname": "gpu-1", "boot_id": "b"}
    data["provenance"]["gpu"]["uuid"] = "GPU-0000"
    data["conditions"] = {"gpu_start": {"sm_clock_mhz": 1980, "power_limit_w": 700.0},
                          "gpu_end": {"sm_clock_mhz": 1980}, "notes": [],
                          "launch_probe": {"empty_kernel_launch_us": 2.5, "graph_replay_us": 4.0, "method": "m"}}
    path = _write(tmp_path, data, "today.json")
    proc = _migrate(str(path))
    assert proc.returncode == 0, proc.stderr
    r = load_result(path)
    assert r.schema_version == 2 and r.provenance.host.hostname == "gpu-1" and r.provenance.gpu.uuid == "GPU-0000"
    assert r.conditions.launch_probe.empty_kernel_launch_us == 2.5


def test_a_version_1_file_loses_its_cuda_event_tpot_on_migration(tmp_path):
    """Version 1 transformers files carried CUDA-event TPOTs (equal to the host clock by construction); v2 has none."""
    data = json.loads(V1_FIXTURE.read_text(encoding="utf-8"))
    data["samples"]["cuda_event_tpot_ms"] = [50.0] * data["workload"]["iterations"]
    path = _write(tmp_path, data, "with-events.json")
    proc = _migrate(str(path))
    assert proc.returncode == 0, proc.stderr
    assert "cuda_event_tpot_ms" not in json.loads(path.read_text(encoding="utf-8"))["samples"]
    assert load_result(path).schema_version == 2


def test_a_version_2_file_written_before_the_cuda_event_removal_loses_the_field(tmp_path):
    data = json.loads(V2_COMMITTED.read_text(encoding="utf-8"))
    data["samples"]["cuda_event_tpot_ms"] = None
    path = _write(tmp_path, data, V2_COMMITTED.name)
    with pytest.raises(ResultFileError):
        load_result(path)
    proc = _migrate(str(path))
    assert proc.returncode == 0, proc.stderr
    assert path.read_bytes() == V2_COMMITTED.read_bytes()


def test_migration_of_a_missing_path_says_so(tmp_path):
    proc = _migrate(str(tmp_path / "nope"))
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr and "Traceback" not in proc.stderr
