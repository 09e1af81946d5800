"""`nox -s tests`: every test suite of the kit, each where it belongs.

    host       pytest tests/host       this (nox) venv: no torch, no docker
    docker     pytest tests/docker     this venv, against the real Docker engine (builds/reuses both images)
    container  pytest tests/container  inside the hf image (torch 2.9.1, transformers 4.51.3, autoawq 0.2.9), CPU
    vllm       pytest tests/vllm       inside the vllm image (vLLM 0.12.0), CPU

In the images the kit is mounted read-only at /kit, exactly as the Docker runner does for a bench.

Options (after `nox -s tests --`):
    --suite host,docker,...   run only these suites (repeatable; default: all four, in that order)
    --ca-bundle PATH          CA bundle for image builds behind a TLS-intercepting proxy (also KIT_CA_BUNDLE)
    --fail-fast               stop after the first failing suite
    anything else             passed to every pytest run (e.g. -k locks, -x, -v)

Every suite's pytest summary ("N passed ...") is printed as it runs and again in a table at the end. Any
failure, error, or a suite that collected nothing fails the session. With CI=true a skip in the host or
docker suite is a failure too (those need nothing CI lacks); skips inside the images are listed.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from kit import KIT_ROOT
from core.errors import KitError

SUITES = ("host", "docker", "container", "vllm", "vllm-0.20")
IMAGE_OF = {"container": "hf", "vllm": "vllm", "vllm-0.20": "vllm-0.20"}
# The vLLM contract suite runs once per vLLM stack, against that version's real classes.
TEST_DIR = {"vllm-0.20": "vllm"}
NO_SKIP_IN_CI = ("host", "docker")


@dataclass
class SuiteResult:
    suite: str
    rc: int = 0
    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    skips: list[str] = field(default_factory=list)
    note: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.failed == 0 and self.errors == 0 and self.tests > 0 and not self.note

    def line(self) -> str:
        parts = [f"{self.passed} passed"]
        for n, word in ((self.failed, "failed"), (self.errors, "errors"), (self.skipped, "skipped")):
            if n:
                parts.append(f"{n} {word}")
        status = "PASS" if self.ok else "FAIL"
        return (f"{self.suite:<10} {status}  {', '.join(parts)} in {self.seconds:.1f}s"
                + (f"  ({self.note})" if self.note else ""))


def read_junit(path: Path, result: SuiteResult) -> None:
    if not path.is_file():
        result.note = result.note or "no junit report written"
        return
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for s in suites:
        result.tests += int(s.get("tests", 0))
        result.failed += int(s.get("failures", 0))
        result.errors += int(s.get("errors", 0))
        result.skipped += int(s.get("skipped", 0))
    result.passed = result.tests - result.failed - result.errors - result.skipped
    for case in root.iter("testcase"):
        sk = case.find("skipped")
        if sk is not None:
            result.skips.append(f"{case.get('classname')}::{case.get('name')}: {sk.get('message', '')}")


def _banner(text: str) -> None:
    print(f"\n{'=' * 20} {text} {'=' * max(3, 76 - len(text))}", flush=True)


def run_host_suite(suite: str, extra: list[str], workdir: Path) -> SuiteResult:
    res = SuiteResult(suite)
    junit = workdir / f"junit-{suite}.xml"
    cmd = [sys.executable, "-m", "pytest", f"tests/{suite}", "-ra", f"--junitxml={junit}", *extra]
    _banner(f"{suite}: {' '.join(cmd[1:])}")
    t0 = time.monotonic()
    res.rc = subprocess.run(cmd, cwd=KIT_ROOT).returncode
    res.seconds = time.monotonic() - t0
    read_junit(junit, res)
    if res.rc == 5:
        res.note = f"no tests collected in tests/{suite}"
    return res


def run_image_suite(suite: str, extra: list[str], workdir: Path, ca_bundle: Optional[Path]) -> SuiteResult:
    from kit.images import ensure_image
    from kit.preflight import docker_preflight
    from kit.runners import RunnerOptions, Step
    from kit.runners.docker import OUTPUT_MOUNT, run_in_image

    stack = IMAGE_OF[suite]
    res = SuiteResult(suite)
    t0 = time.monotonic()
    client = docker_preflight((stack,))
    out = workdir / suite
    opts = RunnerOptions(runner="docker", results_dir=out / "results", output_dir=out / "output", ca_bundle=ca_bundle)
    _banner(f"{suite}: image {stack}")
    image = ensure_image(stack, client, ca_bundle=ca_bundle, log_dir=opts.output_dir / "logs")
    argv = ("-m", "pytest", f"tests/{TEST_DIR.get(suite, suite)}", "-ra", "-p", "no:cacheprovider",
            f"--junitxml={OUTPUT_MOUNT}/junit-{suite}.xml", *extra)
    _banner(f"{suite}: python {' '.join(argv)}  (in {image.tag}, kit at /kit read-only, CPU)")
    step = Step(stack, argv, description=f"{argv[2]} in the {stack} image")
    res.rc = run_in_image(step, opts, client=client, image=image, log_name=f"pytest-{suite}.log")
    res.seconds = time.monotonic() - t0
    read_junit(opts.output_dir / f"junit-{suite}.xml", res)
    if res.rc == 5:
        res.note = f"no tests collected in {argv[2]}"
    return res


def _suites(values: Optional[list[str]]) -> list[str]:
    if not values:
        return list(SUITES)
    chosen = []
    for v in values:
        for s in v.split(","):
            s = s.strip()
            if s not in SUITES:
                raise KitError(f"--suite {s!r}: expected a comma-separated subset of {','.join(SUITES)}.")
            if s not in chosen:
                chosen.append(s)
    return [s for s in SUITES if s in chosen]


def run_tests(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="nox -s tests --", description=__doc__.split("\n\n")[0],
                                epilog="Other options go to pytest.")
    p.add_argument("--suite", action="append", help=f"comma-separated subset of {','.join(SUITES)} (default: all)")
    p.add_argument("--ca-bundle", type=Path, help="CA bundle for image builds (BuildKit secret); also KIT_CA_BUNDLE")
    p.add_argument("--fail-fast", action="store_true", help="stop after the first failing suite")
    ns, extra = p.parse_known_args(argv)
    suites = _suites(ns.suite)
    ca = None
    if ns.ca_bundle or os.environ.get("KIT_CA_BUNDLE"):
        from kit.images import resolve_ca_bundle

        ca = resolve_ca_bundle(ns.ca_bundle)
        os.environ["KIT_CA_BUNDLE"] = str(ca)  # the docker suite builds through the kit's own entry points
    ci = os.environ.get("CI", "").lower() == "true"
    print(f"tests: suites {', '.join(suites)}; CI={'true' if ci else 'false'}; "
          f"base image {os.environ.get('KIT_BASE_IMAGE') or '(Dockerfile default)'}; "
          f"CA bundle {ca or '(none)'}", flush=True)
    results: list[SuiteResult] = []
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kit-tests-") as tmp:
        for suite in suites:
            try:
                if suite in IMAGE_OF:
                    r = run_image_suite(suite, extra, Path(tmp), ca)
                else:
                    r = run_host_suite(suite, extra, Path(tmp))
            except KitError as e:
                r = SuiteResult(suite, rc=1, note=str(e).split("\n")[0][:200])
                print(f"\nerror: {e}", file=sys.stderr)
            if ci and suite in NO_SKIP_IN_CI and r.skipped:
                r.note = r.note or f"{r.skipped} skipped with CI=true"
            results.append(r)
            print(f"\n[{suite}] {r.line()}", flush=True)
            if not r.ok and ns.fail_fast:
                break
    _banner("test summary")
    for r in results:
        print(r.line())
        for s in r.skips:
            print(f"    skipped: {s}")
    total = time.monotonic() - t_all
    print(f"total {total:.1f}s", flush=True)
    bad = [r for r in results if not r.ok]
    if bad or len(results) < len(suites):
        raise KitError("tests failed: " + "; ".join(f"{r.suite} ({r.note or 'see its output above'})" for r in bad)
                       + ("" if len(results) == len(suites) else "; later suites not run (--fail-fast)"))
