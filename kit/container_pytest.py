"""`python -m kit container-pytest STACK [--ca-bundle PATH] -- PYTEST ARGS`: pytest inside a stack's pinned image.

What tests-container, tests-vllm and tests-vllm-0.20 call: the image is built or reused as for a bench, then pytest
runs in it as the Docker runner runs a bench (kit at /kit read-only, CPU, CI forwarded). The exit code is pytest's.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from kit.images import STACKS, ensure_image, resolve_ca_bundle
from kit.preflight import docker_preflight
from kit.runners.base import RunnerOptions, Step
from kit.runners.docker import run_in_image


def container_pytest_main(argv: list[str]) -> None:
    kit_args, pytest_args = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    p = argparse.ArgumentParser(prog="python -m kit container-pytest",
                                usage="%(prog)s STACK [--ca-bundle PATH] -- [PYTEST ARGS ...]",
                                description="Build or reuse STACK's pinned image and run `python -m pytest PYTEST "
                                            "ARGS` in it (kit at /kit read-only, CPU); exits with pytest's exit code.",
                                epilog="Everything after `--` goes to pytest (test paths, -k, -x, -v ...).")
    p.add_argument("stack", choices=STACKS)
    p.add_argument("--ca-bundle", type=Path, help="CA bundle for the image build (BuildKit secret); also KIT_CA_BUNDLE")
    ns = p.parse_args(kit_args)
    ca = resolve_ca_bundle(ns.ca_bundle)
    client = docker_preflight((ns.stack,))
    with tempfile.TemporaryDirectory(prefix=f"kit-pytest-{ns.stack}-") as tmp:
        # Logs (the build's, and pytest's whole output) under output/logs as for a bench; no result is written.
        opts = RunnerOptions(runner="docker", results_dir=Path(tmp) / "results", ca_bundle=ca)
        image = ensure_image(ns.stack, client, ca_bundle=ca, log_dir=opts.output_dir / "logs")
        # /kit is read-only: no .pytest_cache (and no bytecode: the runner sets PYTHONDONTWRITEBYTECODE).
        argv = ("-m", "pytest", "-p", "no:cacheprovider", *pytest_args)
        step = Step(ns.stack, argv, description=f"pytest {' '.join(pytest_args)} in the {ns.stack} image")
        raise SystemExit(run_in_image(step, opts, client=client, image=image))
