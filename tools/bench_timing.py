"""Wall time of a warm `python -m kit report` (target: at most 2 s) and where it goes, on this checkout's results/
and on sample results (tests/support/samples.py); `--nox` also times `nox -s report`. Prints, changes nothing.

Each case runs in fresh interpreters into a temp folder, after one untimed warm-up; then one run is split into stages.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

KIT_ROOT = Path(__file__).resolve().parents[1]
# Run as a script: the checkout (kit) and tests/support (the sample results) go on the path.
sys.path[:0] = [str(KIT_ROOT), str(KIT_ROOT / "tests" / "support")]
TARGET_S = 2.0

# Run in a fresh interpreter so that the import stages are real.
_STAGES = r"""
import sys, time
t = [("start", time.perf_counter())]
from pathlib import Path
from kit.report import load_inputs, load_published, plot, write_all
from kit.report.week1 import render_week1
from kit.report.week2 import render_week2
t.append(("import kit.report (pydantic, models)", time.perf_counter()))
inputs = load_inputs(Path(sys.argv[1]), note=lambda _: None)
published = load_published()
t.append(("load + validate results and published data", time.perf_counter()))
md = {"week1.md": render_week1(inputs, published).encode(), "week2.md": render_week2(inputs, published).encode()}
t.append(("render markdown", time.perf_counter()))
import matplotlib.figure
from matplotlib.backends import backend_agg
t.append(("import matplotlib", time.perf_counter()))
png = {"week1.png": plot("week1", inputs, published), "week2.png": plot("week2", inputs, published)}
t.append(("render two PNGs", time.perf_counter()))
write_all(Path(sys.argv[2]), {**md, **png})
t.append(("write (temp files + rename)", time.perf_counter()))
for i in range(1, len(t)):
    print(f"  {t[i][0]:<44} {(t[i][1] - t[i - 1][1]) * 1e3:8.1f} ms")
print(f"  {'total (after interpreter start)':<44} {(t[-1][1] - t[0][1]) * 1e3:8.1f} ms")
"""


def _timed(name: str, argvs: list[list[str]]) -> str:
    """Run each command line in a fresh process, the first an untimed warm-up; one line of figures."""
    times = []
    for argv in argvs:
        t0 = time.perf_counter()
        subprocess.run(argv, cwd=KIT_ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    times, med = times[1:], statistics.median(times[1:])
    return (f"{name:<52} median {med:6.3f} s   min {min(times):6.3f}   max {max(times):6.3f}   "
            f"(n={len(times)}, target ≤ {TARGET_S:.1f} s: {'ok' if med <= TARGET_S else 'OVER TARGET'})")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python tools/bench_timing.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="timed runs per case (default 5)")
    p.add_argument("--nox", action="store_true", help="also time `nox -s report` (needs nox on PATH)")
    ns = p.parse_args(argv)

    from samples import sample_set

    with tempfile.TemporaryDirectory(prefix="kit-report-timing-") as tmp:
        tmp_path = Path(tmp)
        sample = tmp_path / "results"
        n_files = len(sample_set(sample))
        print(f"python {sys.version.split()[0]}; {ns.runs} timed runs per case after one warm-up; "
              "each run is `python -m kit report --results-dir R --reports-dir D` in a fresh interpreter")
        # Re-rendering into the same folder reuses unchanged plots (their key matches); a new reports folder every
        # run draws both PNGs (what a run with new results costs).
        for name, results, fresh in [("results/ of this checkout, re-render", KIT_ROOT / "results", False),
                                     (f"{n_files} sample results, re-render", sample, False),
                                     (f"{n_files} sample results, plots drawn", sample, True)]:
            folder = name.replace(" ", "_").replace("/", "")
            print(_timed(name, [[sys.executable, "-m", "kit", "report", "--results-dir", str(results), "--reports-dir",
                                 str(tmp_path / (f"fresh-{i}" if fresh else "same") / folder)]
                                for i in range(ns.runs + 1)]), flush=True)
        if ns.nox:
            for flags, name in ((["-s"], "nox -s report (venv reused, dependencies re-checked)"),
                                (["-R", "-s"], "nox -R -s report (venv reused, no install)")):
                nox = ["nox", *flags, "report", "--", "--results-dir", str(sample), "--reports-dir",
                       str(tmp_path / "nox")]
                print(_timed(name, [nox] * (ns.runs + 1)), flush=True)
        print(f"\nstages of one run on the {n_files} sample results (fresh interpreter, warm caches):", flush=True)
        subprocess.run([sys.executable, "-c", _STAGES, str(sample), str(tmp_path / "stages")], cwd=KIT_ROOT,
                       check=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
