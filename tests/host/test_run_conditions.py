"""What moves a launch-bound row (issue 17 item 4): the host record, the GPU's state around the measured iterations,
the launch probe's plumbing, and the report's side-by-side table.

No GPU here: NVML is replaced by FakeNvml, a test double with pynvml's names and units (it only answers; it
cannot be told to set anything). The probe's measurement itself needs a GPU and is not run here; its failure path
(a child without torch) and its output parsing are."""
from __future__ import annotations

import json

import pytest

from bench import conditions
from bench.conditions import ConditionsRecorder, gpu_state_or_why, nvml_handle
from bench.provenance import collect_provenance, cpu_model, host_record
from core.results import GPUState, LaunchProbe
from kit.report.common import Footnotes, Loaded, group_runs
from kit.report.week1 import NOT_RECORDED, conditions_table, render_details, runs_per_configuration


def gpu_state(index, nvml):
    """The GPU state, or None when it cannot be read (what ConditionsRecorder records)."""
    return gpu_state_or_why(index, nvml)[0]


X86_CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
flags\t\t: fpu vme

processor\t: 1
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9654 96-Core Processor
"""
ARM_CPUINFO = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm
CPU implementer\t: 0x41
"""


# --------------------------------------------------------------------------- host record


def test_cpu_model_is_the_model_name_line_of_cpuinfo():
    assert cpu_model(X86_CPUINFO) == "AMD EPYC 9654 96-Core Processor"


def test_cpu_model_is_none_without_a_model_name_line():
    assert cpu_model(ARM_CPUINFO) is None
    assert cpu_model("") is None


def test_host_record_reads_proc_files_and_survives_their_absence(tmp_path):
    (tmp_path / "cpuinfo").write_text(X86_CPUINFO)
    (tmp_path / "boot_id").write_text("92e31464-0947-4f99-bab9-b73000a6d480\n")
    host = host_record(tmp_path / "cpuinfo", tmp_path / "boot_id")
    assert host.cpu_model == "AMD EPYC 9654 96-Core Processor"
    assert host.boot_id == "92e31464-0947-4f99-bab9-b73000a6d480"
    assert host.cpu_cores and host.cpu_cores >= 1
    bare = host_record(tmp_path / "missing", tmp_path / "missing")
    assert (bare.cpu_model, bare.boot_id) == (None, None) and bare.cpu_cores == host.cpu_cores


def test_a_cpu_run_records_its_host_but_no_gpu(monkeypatch):
    monkeypatch.setenv("KIT_STACK", "hf")
    prov = collect_provenance("hf", "cpu")
    assert prov.gpu is None
    assert prov.host is not None and prov.host.cpu_cores and prov.host.hostname


def test_a_cpu_result_has_host_but_no_conditions(make_bench_result):
    # bench/run.py hooks the recorder in only on a GPU, so build_result gets conditions=None on a CPU run.
    from bench.api import Measurement
    from bench.run import build_result

    sample = make_bench_result(gpu=None, roofline=False)
    s = sample.samples
    m = Measurement(ttft_ms=s.ttft_ms, tpot_ms=s.tpot_ms, e2e_ms=s.e2e_ms, itl_ms=s.itl_ms, backend=sample.backend)
    result = build_result(sample.workload, m, collect_provenance("hf", "cpu"), None, [])
    assert result.conditions is None and result.provenance.host is not None


# --------------------------------------------------------------------------- GPU state through NVML


class FakeNVMLError(Exception):
    pass


class FakeNvml:
    """Test double of pynvml (no GPU here): its constants and the getters gpu_state uses, in NVML's units
    (clocks MHz, power mW). `raising`: names of getters that fail as on a GPU without that counter."""

    NVML_CLOCK_SM, NVML_CLOCK_MEM, NVML_TEMPERATURE_GPU = 1, 2, 0

    def __init__(self, uuids=("GPU-aaaa1111-0000", "GPU-bbbb2222-0000"), raising=(), init_fails=False):
        self.uuids, self.raising, self.init_fails = list(uuids), set(raising), init_fails
        self.calls: list[str] = []
        self.initialised = False

    def __getattribute__(self, name):
        if name.startswith("nvml"):
            object.__getattribute__(self, "calls").append(name)
            if name in object.__getattribute__(self, "raising"):
                def fail(*_a):
                    raise FakeNVMLError(f"{name}: Not Supported")
                return fail
        return object.__getattribute__(self, name)

    def nvmlInit(self):
        if self.init_fails:
            raise FakeNVMLError("Driver Not Loaded")
        self.initialised = True

    def nvmlShutdown(self):
        self.initialised = False

    def nvmlDeviceGetCount(self):
        return len(self.uuids)

    def nvmlDeviceGetHandleByIndex(self, i):
        if not 0 <= i < len(self.uuids):
            raise FakeNVMLError("Invalid Argument")
        return i

    def nvmlDeviceGetUUID(self, h):
        return self.uuids[h]

    def nvmlDeviceGetClockInfo(self, h, kind):
        return {self.NVML_CLOCK_SM: 1980 - h, self.NVML_CLOCK_MEM: 3201}[kind]

    def nvmlDeviceGetEnforcedPowerLimit(self, h):
        return 700000  # mW

    def nvmlDeviceGetPowerUsage(self, h):
        return 123456  # mW

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == self.NVML_TEMPERATURE_GPU
        return 41

    def nvmlDeviceGetPerformanceState(self, h):
        return 0


@pytest.fixture
def all_gpus_visible(monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def test_gpu_state_reads_clocks_and_converts_milliwatts_to_watts(all_gpus_visible):
    nvml = FakeNvml()
    assert gpu_state(0, nvml) == GPUState(sm_clock_mhz=1980, mem_clock_mhz=3201, power_limit_w=700.0,
                                          power_draw_w=123.456, temperature_c=41, pstate=0)
    assert not nvml.initialised  # shut down again


def test_gpu_state_only_reads(all_gpus_visible):
    nvml = FakeNvml()
    gpu_state(0, nvml)
    assert nvml.calls and all(c.startswith(("nvmlInit", "nvmlShutdown", "nvmlDeviceGet")) for c in nvml.calls)


def test_a_failing_query_leaves_its_field_none_and_the_rest_read(all_gpus_visible):
    nvml = FakeNvml(raising={"nvmlDeviceGetEnforcedPowerLimit", "nvmlDeviceGetPerformanceState"})
    state = gpu_state(0, nvml)
    assert state.power_limit_w is None and state.pstate is None
    assert (state.sm_clock_mhz, state.mem_clock_mhz, state.power_draw_w) == (1980, 3201, 123.456)


def test_no_nvml_gives_none_and_says_why(all_gpus_visible):
    assert gpu_state(0, FakeNvml(init_fails=True)) is None
    state, why = gpu_state_or_why(0, FakeNvml(init_fails=True))
    assert state is None and "Driver Not Loaded" in why


def test_unknown_pstate_is_none(all_gpus_visible):
    class UnknownPstate(FakeNvml):
        def nvmlDeviceGetPerformanceState(self, h):
            return conditions.NVML_PSTATE_UNKNOWN

    assert gpu_state(0, UnknownPstate()).pstate is None


@pytest.mark.parametrize("visible, expected", [(None, 0), ("1", 1), ("1,0", 1), ("GPU-bbbb2222-0000", 1),
                                               ("GPU-bbbb", 1), ("GPU-aaaa1111-0000,1", 0)])
def test_nvml_handle_is_the_gpu_torch_calls_cuda0(visible, expected):
    """The Docker runner passes every GPU and forwards CUDA_VISIBLE_DEVICES (PCI bus order, nvidia-smi's numbers):
    NVML, which ignores that variable, must look up torch's cuda:0 by its entry."""
    env = {} if visible is None else {"CUDA_VISIBLE_DEVICES": visible}
    assert nvml_handle(FakeNvml(), 0, env) == expected


@pytest.mark.parametrize("visible", ["", "0,,1"])
def test_nvml_handle_of_an_empty_entry_is_no_gpu_not_the_first(visible):
    with pytest.raises(LookupError):
        nvml_handle(FakeNvml(), 1 if visible else 0, {"CUDA_VISIBLE_DEVICES": visible})


def test_nvml_handle_of_an_unknown_uuid_raises_so_the_state_is_none_with_a_reason(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-cccc")
    state, why = gpu_state_or_why(0, FakeNvml())
    assert state is None and "GPU-cccc" in why


# --------------------------------------------------------------------------- the recorder and the probe's plumbing


PROBE = LaunchProbe(empty_kernel_launch_us=2.5, graph_replay_us=8.0, method="test")


def test_recorder_fills_conditions_through_before_and_after(all_gpus_visible):
    rec = ConditionsRecorder(nvml=FakeNvml(), probe=lambda: (PROBE, []))
    rec.before()
    rec.after()
    c = rec.conditions
    assert c.launch_probe == PROBE and c.gpu_start.sm_clock_mhz == 1980 and c.gpu_end.mem_clock_mhz == 3201
    assert c.notes == []


def test_recorder_survives_a_raising_probe_and_no_nvml(all_gpus_visible):
    def probe():
        raise RuntimeError("boom")

    rec = ConditionsRecorder(nvml=FakeNvml(init_fails=True), probe=probe)
    rec.before()
    rec.after()
    c = rec.conditions
    assert c.launch_probe is None and c.gpu_start is None and c.gpu_end is None
    assert any("launch probe not taken: RuntimeError: boom" in n for n in c.notes)
    assert sum("nvidia-ml-py" in n for n in c.notes) == 2  # start and end each say why


def test_probe_output_is_parsed_into_a_launch_probe_and_notes():
    line = json.dumps({"empty_kernel_launch_us": 2.5, "graph_replay_us": None, "method": "m",
                       "notes": ["CUDA graph replay not measured: x"]})
    probe, notes = conditions.parse_probe_output("torch warning\n" + line + "\n")
    assert probe.empty_kernel_launch_us == 2.5 and probe.graph_replay_us is None
    assert notes == ["CUDA graph replay not measured: x"]


@pytest.mark.parametrize("stdout", ["", "not json", json.dumps({"empty_kernel_launch_us": -1, "method": "m"})])
def test_unreadable_probe_output_raises_value_error(stdout):
    with pytest.raises(ValueError):
        conditions.parse_probe_output(stdout)


def test_probe_child_that_fails_gives_none_and_the_reason_never_an_exception():
    """A real child interpreter; the host venv has no torch, so the probe fails as it would without a GPU stack."""
    probe, notes = conditions.launch_probe_subprocess(timeout=60)
    assert probe is None and len(notes) == 1 and notes[0].startswith("launch probe not taken:")
    assert "torch" in notes[0]


# --------------------------------------------------------------------------- the report


def _recorded(make_bench_result, created, sm_end=1755, host=True, **kw):
    extra = {}
    if host:
        extra["provenance"] = {"host": {"cpu_model": "AMD EPYC 9654", "cpu_cores": 192, "hostname": "node7",
                                        "boot_id": "92e31464-0947-4f99"}, "gpu": {"uuid": "GPU-12345678-aaaa"}}
        extra["conditions"] = {"gpu_start": {"sm_clock_mhz": 1980, "mem_clock_mhz": 3201, "power_limit_w": 700.0},
                               "gpu_end": {"sm_clock_mhz": sm_end, "mem_clock_mhz": 3201, "power_limit_w": 700.0},
                               "launch_probe": {"empty_kernel_launch_us": 2.314, "graph_replay_us": None,
                                                "method": "m"}}
    return make_bench_result(gpu="NVIDIA H200", created_utc=created, **extra, **kw)


def _rows(table: str) -> dict[str, list[str]]:
    out = {}
    for line in table.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        out[cells[0]] = cells[1:]
    return out


def test_table_has_one_column_per_run_oldest_first(make_bench_result):
    new = _recorded(make_bench_result, "2026-01-03T00:00:00Z")
    old = _recorded(make_bench_result, "2026-01-01T00:00:00Z", host=False)
    table = conditions_table([new, old])
    assert [c.strip() for c in table.splitlines()[0].strip("|").split("|")] == ["Run", f"`{old.run_id}`",
                                                                               f"`{new.run_id}`"]
    rows = _rows(table)
    assert rows["Host CPU"] == [NOT_RECORDED, "AMD EPYC 9654"]
    assert rows["Logical CPUs"] == [NOT_RECORDED, "192"]
    assert rows["Boot id"] == [NOT_RECORDED, "92e31464"]
    assert rows["GPU uuid"] == [NOT_RECORDED, "GPU-12345678"]
    assert rows["SM clock, MHz (start → end)"] == [NOT_RECORDED, "1980 → 1755"]
    assert rows["Memory clock, MHz (start → end)"] == [NOT_RECORDED, "3201"]  # unchanged: one value
    assert rows["Power limit, W"] == [NOT_RECORDED, "700"]
    assert rows["Empty-kernel launch, µs"] == [NOT_RECORDED, "2.31"]
    assert rows["CUDA graph replay, µs"] == [NOT_RECORDED, "—"]
    assert rows["TTFT median"] == ["95.41ms", "95.41ms"]


def test_table_marks_values_a_run_could_not_read_with_a_dash(make_bench_result):
    r = make_bench_result(gpu="NVIDIA H200", provenance={"host": {"cpu_cores": 8}},
                          conditions={"gpu_end": {"sm_clock_mhz": 1400}, "notes": ["no nvidia-ml-py"]})
    rows = _rows(conditions_table([r]))
    assert rows["Host CPU"] == ["—"] and rows["Logical CPUs"] == ["8"] and rows["GPU uuid"] == ["—"]
    assert rows["SM clock, MHz (start → end)"] == ["— → 1400"] and rows["Power limit, W"] == ["—"]
    assert rows["Empty-kernel launch, µs"] == ["—"]


def _details(results) -> str:
    runs = [Loaded(f"r{i}.json", r) for i, r in enumerate(results)]
    groups = group_runs(runs)
    return render_details(groups, sorted({r.backend.label for r in results}), Footnotes("n"))


def test_week1_details_show_conditions_for_a_configuration_run_twice_on_a_gpu(make_bench_result):
    twice = [_recorded(make_bench_result, "2026-01-01T00:00:00Z"), _recorded(make_bench_result, "2026-01-02T00:00:00Z")]
    details = _details(twice)
    assert "#### transformers: run conditions" in details and "The 2 runs of this configuration" in details
    assert conditions_table(twice) in details


def test_week1_details_have_no_conditions_table_for_a_single_run_or_cpu_runs(make_bench_result):
    assert "run conditions" not in _details([_recorded(make_bench_result, "2026-01-01T00:00:00Z")])
    cpu = [make_bench_result(gpu=None, created_utc=c, roofline=False)
           for c in ("2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")]
    assert "run conditions" not in _details(cpu)
    assert runs_per_configuration(group_runs([Loaded(f"c{i}", r) for i, r in enumerate(cpu)])[0]) == []
