"""The week-2 profiler through its real entry point (profile/run_profile.py) on CPU, tiny synthetic checkpoint."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.container.conftest import REPO_ROOT

CPU_COLUMNS = ["Name", "Self CPU %", "Self CPU", "CPU total %", "CPU total", "CPU time avg", "CPU Mem",
               "Self CPU Mem", "# of Calls"]


@pytest.fixture(scope="module")
def profile_run(tmp_path_factory, stack, tiny_ckpt):
    """One real profiler run (module scope: it is the slowest container test)."""
    import os

    tmp = tmp_path_factory.mktemp("profile")
    env = dict(os.environ)
    env.update({
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])),
        "KIT_RESULTS_DIR": str(tmp / "results"),
        "KIT_OUTPUT_DIR": str(tmp / "output"),
        "KIT_CACHE_DIR": str(tiny_ckpt.parent.parent),
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TMPDIR": str(tmp / "tmp"),  # where the cold phase's Triton cache is made: empty again afterwards
    })
    (tmp / "tmp").mkdir()
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "profile" / "run_profile.py"), "--synthetic", "tiny",
                           "--device", "cpu", "--warmup", "1"], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = sorted((tmp / "results").glob("profile-*.json"))
    assert len(files) == 1, files
    return proc, files[0], tmp


def _header_columns(table: str) -> list[str]:
    header = table.split("\n")[1]
    return [c.strip() for c in header.split("  ") if c.strip()]


def test_cold_warm_and_decode_phases_are_present(profile_run):
    from core.results import load_result

    _, path, _ = profile_run
    result = load_result(path)
    assert [p.label for p in result.phases] == ["cold", "warm", "decode"]
    assert result.backend.device == "cpu"
    host = result.provenance.host  # profiles record the measuring machine too
    assert host is not None and host.cpu_cores >= 1 and host.boot_id


def test_cpu_table_has_the_cpu_columns_and_ten_rows(profile_run):
    from core.results import load_result

    result = load_result(profile_run[1])
    for phase in result.phases:
        assert _header_columns(phase.table) == CPU_COLUMNS
        body = [ln for ln in phase.table.strip("\n").split("\n") if ln and not ln.startswith("-")][1:]
        assert len(body) == 10
        assert len(phase.totals) == 1 and phase.totals[0].startswith("Self CPU time total:")


def test_awq_linear_rows_have_seven_calls_per_layer(profile_run):
    from core.results import load_result

    result = load_result(profile_run[1])
    layers = json.loads((REPO_ROOT / "bench" / "configs" / "tiny.json").read_text())
    layers = layers.get("num_hidden_layers") or layers["config"]["num_hidden_layers"]
    for phase in result.phases:
        awq = [r for r in phase.rows if r.name == "WQLinearMMFunction"]
        assert len(awq) == 1, phase.label
        assert awq[0].calls == 7 * layers, (phase.label, awq[0].calls)
        assert phase.awq_kernel_path.startswith("naive"), phase.awq_kernel_path
        assert f"{7 * layers} AWQ linear calls" in phase.diagnosis


def test_rows_round_trip_through_the_results_file(profile_run):
    from core.results import ProfileResult, load_result

    result = load_result(profile_run[1])
    again = ProfileResult.model_validate(json.loads(profile_run[1].read_text()))
    assert again == result
    cold = result.phases[0]
    # The stored rows are the profiler's numbers: the table's first row is the largest self CPU row.
    first_row_name = [ln for ln in cold.table.split("\n")[3:] if ln.strip()][0].split("  ")
    first_row_name = [c for c in first_row_name if c.strip()][0].strip()
    assert cold.rows[0].name == first_row_name
    assert cold.rows[0].self_cpu_us == max(r.self_cpu_us for r in cold.rows)


def test_prints_seed_format_and_writes_traces(profile_run):
    proc, _, tmp = profile_run
    assert "- Device: CPU" in proc.stdout
    assert "- Self CPU time total:" in proc.stdout
    traces = sorted((tmp / "output" / "traces").glob("*.trace.json"))
    assert len(traces) == 3
    assert json.loads(traces[0].read_text())["traceEvents"]
    assert "Profiler overhead on the warm prefill" in proc.stderr


def test_device_total_counts_each_kernel_once(stack):
    """WQLinearMMFunction's self CUDA time repeats awq_gemm_kernel's: the total must count it once (torch's rule)."""
    from types import SimpleNamespace

    from torch.autograd import DeviceType

    sys.path.insert(0, str(REPO_ROOT / "profile"))
    from profiling import table_self_device_total_us

    averages = [
        SimpleNamespace(key="WQLinearMMFunction", device_type=DeviceType.CPU, is_legacy=False,
                        is_user_annotation=False, self_device_time_total=8578.0),
        SimpleNamespace(key="awq_gemm_kernel", device_type=DeviceType.CUDA, is_legacy=False,
                        is_user_annotation=False, self_device_time_total=8578.0),
        SimpleNamespace(key="elementwise_kernel", device_type=DeviceType.CUDA, is_legacy=False,
                        is_user_annotation=False, self_device_time_total=4707.0),
    ]
    assert table_self_device_total_us(averages) == 8578.0 + 4707.0


def test_the_cold_triton_cache_is_removed(profile_run):
    _, _, tmp = profile_run
    assert not list((tmp / "tmp").glob("kit-triton-cold-*"))


def test_a_cpu_profile_prints_no_kineto_device_error(profile_run):
    """Without a CUDA driver kineto logs 'gpuGetDeviceCount failed with code 35': harmless there, so silenced."""
    proc, _, _ = profile_run
    assert "gpuGetDeviceCount" not in proc.stdout + proc.stderr
