"""`nox -s venv -- STACK` (`python -m kit venv STACK`): the local runner's interpreter, made from the stack's locks.

.venv-<STACK>/ is made with uv in the image's order: bootstrap.lock (pip, setuptools, wheel), then requirements.lock
with --require-hashes --no-deps --no-build-isolation (autoawq 0.2.9 is an sdist: it builds with the hashed
setuptools), then a dependency check. With `--wheelhouse DIR`: from a folder `nox -s wheelhouse -- STACK` filled,
with no network at all (kit/wheelhouse.py).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from kit import KIT_ROOT
from core.errors import KitError
from kit.wheelhouse import download, make_venv_offline, removed_if_half_made

# What a local interpreter must be able to import to run a stack's steps (bench, profile; pydantic: the results).
STACK_MODULES = {"hf": ("torch", "transformers", "awq", "pydantic"), "vllm": ("torch", "vllm", "pydantic"),
                 "vllm-0.20": ("torch", "vllm", "pydantic")}


def venv_python(stack: str, root: Path = KIT_ROOT) -> Path:
    return root / f".venv-{stack}" / "bin" / "python"


def make_command(stack: str) -> str:
    return f"nox -s venv -- {stack}"


def find_uv(purpose: str, session: str) -> str:
    uv = shutil.which("uv")
    if not uv:
        raise KitError(f"{purpose} needs uv, and it is not on PATH. Run `{session}` (nox installs uv into its own "
                       "venv), or `pip install uv` first.")
    return uv


def _run(cmd: list[str]) -> None:
    print("$ " + " ".join(cmd), flush=True)
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")  # use the given interpreter, never fetch one
    if subprocess.run(cmd, env=env).returncode != 0:
        raise KitError(f"`{' '.join(cmd)}` failed; uv's message is printed above. A network or certificate error "
                       "behind a TLS-intercepting proxy needs SSL_CERT_FILE pointing at the proxy's CA bundle.")


def stack_locks(stack: str, root: Path = KIT_ROOT) -> Path:
    """images/<stack>/, the folder of a stack's locks (or a folder given by path, e.g. tests/stacks/offline); one
    paragraph for an unknown stack."""
    locks = Path(stack).resolve() if os.sep in stack else root / "images" / stack
    if not (locks / "requirements.lock").is_file():
        stacks = sorted(p.name for p in (root / "images").iterdir() if (p / "requirements.lock").is_file())
        raise KitError(f"No stack {stack!r}: images/{stack}/requirements.lock does not exist. "
                       f"Stacks: {', '.join(stacks)}.")
    return locks


def make_venv(stack: str, python: str, root: Path = KIT_ROOT) -> Path:
    locks = stack_locks(stack, root)
    uv, target = find_uv("Making the local interpreter", make_command(stack)), venv_python(stack, root)
    t0 = time.monotonic()
    with removed_if_half_made(target.parent.parent):
        _run([uv, "venv", "--clear", "--python", python, str(target.parent.parent)])
        _run([uv, "pip", "install", "--python", str(target), "--require-hashes", "--no-deps",
              "-r", str(locks / "bootstrap.lock")])
        _run([uv, "pip", "install", "--python", str(target), "--require-hashes", "--no-deps", "--no-build-isolation",
              "-r", str(locks / "requirements.lock")])
        _run([uv, "pip", "check", "--python", str(target)])
    print(f"venv: {target.parent.parent} made from images/{stack}/*.lock in {time.monotonic() - t0:.0f} s; "
          f"`--runner local` and `nox -s demo` use it by default", flush=True)
    return target


def venv_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="nox -s venv --", description=__doc__.split("\n\n")[0])
    p.add_argument("stack", nargs="?", default="hf",
                   help="hf (default), vllm or vllm-0.20: which images/<stack>/ locks")
    p.add_argument("--python", default=sys.executable, help="base interpreter (default: the one running this)")
    p.add_argument("--wheelhouse", type=Path, help="install from this folder (made by `nox -s wheelhouse -- STACK`) "
                                                   "with no network at all, every file checked against the locks")
    p.add_argument("--venv", type=Path, help="with --wheelhouse: where to make it (default .venv-STACK/, the one "
                                             "the local runner uses)")
    ns = p.parse_args(argv)
    if ns.wheelhouse:
        locks = stack_locks(ns.stack)
        venv = ns.venv or venv_python(locks.name).parent.parent
        make_venv_offline(locks.name, locks, ns.wheelhouse, ns.python, venv.resolve())
        if ns.venv is None:
            print(f"venv: `--runner local` and `nox -s demo` use {venv} by default", flush=True)
    else:
        make_venv(ns.stack, ns.python)


def wheelhouse_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="nox -s wheelhouse --",
                                description="Download every file a stack's locks name, for the lock's Python and "
                                            "platform, hashes checked (sdist-only packages built once into wheels), "
                                            "for `nox -s venv -- STACK --wheelhouse DIR` on a host without internet.")
    p.add_argument("stack", help="hf, vllm or vllm-0.20: which images/<stack>/ locks")
    p.add_argument("--dest", type=Path, default=KIT_ROOT / "wheelhouse",
                   help="the folder (default: wheelhouse/, git-ignored; stacks may share it)")
    p.add_argument("--ca-bundle", type=Path, help="CA bundle of a TLS-intercepting proxy (default: KIT_CA_BUNDLE, "
                                                  "PIP_CERT or SSL_CERT_FILE)")
    ns = p.parse_args(argv)
    locks = stack_locks(ns.stack)
    download(locks.name, locks, ns.dest.resolve(), ca_bundle=ns.ca_bundle)
