"""A stack's exact locks as a local interpreter: `nox -s venv -- STACK` makes .venv-<STACK>/ with uv, in the image's
order: bootstrap.lock (pip, setuptools, wheel), then requirements.lock with --require-hashes --no-deps
--no-build-isolation (autoawq 0.2.9 is an sdist: it builds with the hashed setuptools), then a dependency check.

Offline (README "GPU hosts without internet"): `nox -s wheelhouse -- STACK` fills a folder with every file the locks
name, and `nox -s venv -- STACK --wheelhouse DIR` installs from it with no network at all. A wheelhouse is a folder of
files (stacks may share it) plus one manifest per stack, `wheelhouse-<stack>.json`, which records the wheels built
from sdist-only packages (autoawq 0.2.9) beside the sdist hash the lock pins. Standard library only.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kit import KIT_ROOT
from core.errors import KitError
from core.files import atomic_write_text
from core.locks import lock_requirements, normalize

LOCKS = ("bootstrap.lock", "requirements.lock")
MANIFEST = "wheelhouse-{stack}.json"
_NO_DISTRIBUTION = re.compile(r"(?:No matching distribution found for|Could not find a version that satisfies the "
                              r"requirement) ([A-Za-z0-9_.\-]+)==")


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


def stack_locks(stack: str) -> Path:
    """images/<stack>/, the folder of a stack's locks (or a folder given by path, e.g. tests/stacks/offline); one
    paragraph for an unknown stack."""
    locks = Path(stack).resolve() if os.sep in stack else KIT_ROOT / "images" / stack
    if not (locks / "requirements.lock").is_file():
        stacks = sorted(p.name for p in (KIT_ROOT / "images").iterdir() if (p / "requirements.lock").is_file())
        raise KitError(f"No stack {stack!r}: images/{stack}/requirements.lock does not exist. "
                       f"Stacks: {', '.join(stacks)}.")
    return locks


def _run_shown(cmd: list[str], tool: str, hint: str, env: Optional[dict[str, str]] = None) -> None:
    """Print the command, run it; one paragraph (the tool's own message is above it) when it fails."""
    print("$ " + " ".join(cmd), flush=True)
    if subprocess.run(cmd, env=env).returncode != 0:
        raise KitError(f"`{' '.join(cmd)}` failed; {tool}'s message is printed above. {hint}")


@dataclass(frozen=True)
class Pin:
    name: str
    version: str
    hashes: tuple[str, ...]  # "sha256:..." as the lock writes them
    lock: str  # which lock file names it


def read_pins(lock_dir: Path) -> list[Pin]:
    """The packages of a stack's two locks, bootstrap first (the install order)."""
    pins = []
    for lock in LOCKS:
        path = lock_dir / lock
        if not path.is_file():
            raise KitError(f"{path} is missing: a stack is a folder with {' and '.join(LOCKS)} (`nox -s lock`).")
        for name, (version, hashes) in lock_requirements(path.read_text(encoding="utf-8")).items():
            pins.append(Pin(name, version, hashes, lock))
    return pins


def locks_sha256(lock_dir: Path) -> str:
    h = hashlib.sha256()
    for lock in LOCKS:
        h.update((lock_dir / lock).read_bytes())
    return h.hexdigest()


def lock_target(lock_dir: Path) -> tuple[str, str]:
    """(python, platform) from the main lock's `# kit-lock:` header, e.g. ("3.12", "x86_64-manylinux_2_35")."""
    text = (lock_dir / "requirements.lock").read_text(encoding="utf-8")
    m = re.search(r"^# kit-lock:.*\bpython=(\S+) platform=(\S+)", text, re.M)
    if not m:
        raise KitError(f"{lock_dir / 'requirements.lock'} has no `# kit-lock: ... python=X platform=Y` header, so the "
                       "wheels' Python and platform are unknown: regenerate it with `nox -s lock`.")
    return m.group(1), m.group(2)


def pip_platforms(platform: str) -> list[str]:
    """pip's --platform values a uv platform like x86_64-manylinux_2_35 accepts: every older glibc too."""
    m = re.fullmatch(r"(x86_64|aarch64)-manylinux_2_(\d+)", platform)
    if not m:
        raise KitError(f"lock platform {platform!r}: the wheelhouse knows only <arch>-manylinux_2_<N> platforms.")
    arch, newest = m.group(1), int(m.group(2))
    tags = [f"manylinux_2_{n}_{arch}" for n in range(newest, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    return tags + [f"{tag}_{arch}" for n, tag in legacy.items() if n <= newest]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return "sha256:" + h.hexdigest()


@contextmanager
def _requirements_file(pins: list[Pin], hashes: Optional[dict[Pin, str]] = None):
    """A temporary file of hashed requirement lines; `hashes` narrows a pin to the one file the wheelhouse holds."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as f:
        f.writelines(f"{p.name}=={p.version} " + " ".join(f"--hash={h}" for h in ((hashes[p],) if hashes else p.hashes))
                     + "\n" for p in pins)
        f.flush()
        yield f.name


@contextmanager
def removed_if_half_made(venv: Path):
    """A venv that failed half-way would pass for a stack: remove it (and say so) on any failure or interrupt."""
    try:
        yield
    except BaseException:
        shutil.rmtree(venv, ignore_errors=True)
        print(f"venv: removed the half-made {venv}", file=sys.stderr, flush=True)
        raise


def dist_of(filename: str) -> Optional[tuple[str, str]]:
    """(normalized name, version) a distribution file's name declares (PEP 427 wheels, PEP 625 sdists)."""
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        return (normalize(parts[0]), parts[1]) if len(parts) >= 5 else None
    for ext in (".tar.gz", ".zip"):
        if filename.endswith(ext):
            dist, _, version = filename[:-len(ext)].rpartition("-")
            return (normalize(dist), version) if dist else None
    return None


def _files_by_dist(wheelhouse: Path) -> dict[tuple[str, str], list[Path]]:
    """(name, version) -> the folder's files whose names declare them: pip's --find-links picks files by name too."""
    out: dict[tuple[str, str], list[Path]] = {}
    for p in sorted(wheelhouse.iterdir()):
        if p.is_file() and (dist := dist_of(p.name)):
            out.setdefault(dist, []).append(p)
    return out


def _pip_with_progress(args: list[str], total: int) -> subprocess.CompletedProcess:
    """pip (this interpreter's), one progress line per package it starts on; the whole output kept for errors."""
    lines, done = [], 0
    with subprocess.Popen([sys.executable, "-m", "pip", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        for line in proc.stdout:  # type: ignore[union-attr]
            lines.append(line)
            if line.startswith("Collecting "):
                done += 1
                print(f"wheelhouse: [{done}/{total}] {line.split()[1]}", flush=True)
    return subprocess.CompletedProcess(proc.args, proc.returncode, "".join(lines))


def _download_wheels(pins: list[Pin], dest: Path, python: str, platform: str, index: list[str]) -> list[Pin]:
    """pip download every pin as a wheel for the lock's target; returns the pins that have no such wheel."""
    wanted, no_wheel = list(pins), []
    platform_args = [a for p in pip_platforms(platform) for a in ("--platform", p)]
    while wanted:
        with _requirements_file(wanted) as req:
            r = _pip_with_progress(["download", *index, "--no-deps", "--only-binary=:all:", "--require-hashes",
                                    "--python-version", python, "--implementation", "cp", *platform_args,
                                    "--progress-bar", "off", "-d", str(dest), "-r", req], len(wanted))
        if r.returncode == 0:
            return no_wheel
        m = _NO_DISTRIBUTION.search(r.stdout)
        missing = normalize(m.group(1)) if m else None
        if missing is None or missing not in {p.name for p in wanted}:
            raise KitError("pip download failed; its last lines:\n" + "\n".join(r.stdout.splitlines()[-15:]) +
                           "\nA certificate error behind a TLS-intercepting proxy needs --ca-bundle PATH.")
        no_wheel += [p for p in wanted if p.name == missing]
        wanted = [p for p in wanted if p.name != missing]
        print(f"wheelhouse: {missing} has no wheel for Python {python} / {platform}: its sdist will be built",
              flush=True)
    return no_wheel


def _build_sdists(no_wheel: list[Pin], bootstrap: list[Pin], dest: Path, index: list[str]) -> list[dict]:
    """Download each sdist (hash-checked) and build it once into a pure wheel in dest, with the bootstrap lock's
    setuptools and wheel (no build isolation: an unpinned setuptools would escape the hash check)."""
    built = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        env_python = _bootstrapped_venv(sys.executable, tmp / "build-env", bootstrap, dest)
        for pin in no_wheel:
            sdists = tmp / f"sdist-{pin.name}"
            with _requirements_file([pin]) as req:
                r = subprocess.run([sys.executable, "-m", "pip", "download", *index, "--no-deps", "--no-binary=:all:",
                                    "--require-hashes", "--progress-bar", "off", "-d", str(sdists), "-r", req],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            if r.returncode != 0:
                raise KitError(_no_wheel_paragraph(pin, "it has no sdist either", r.stdout))
            sdist = next(sdists.iterdir())
            out = tmp / f"wheel-{pin.name}"
            r = subprocess.run([env_python, "-m", "pip", "wheel", "--no-index", "--no-deps", "--no-build-isolation",
                                "-w", str(out), str(sdist)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
            wheels = list(out.glob("*.whl")) if r.returncode == 0 else []
            if not wheels:
                raise KitError(_no_wheel_paragraph(pin, f"building its sdist {sdist.name} failed", r.stdout))
            if not wheels[0].name.endswith("-none-any.whl"):
                raise KitError(_no_wheel_paragraph(pin, f"its sdist builds a platform wheel here ({wheels[0].name}), "
                                                   "which need not run on the lock's platform", ""))
            shutil.copy2(wheels[0], dest / wheels[0].name)
            built.append({"name": pin.name, "version": pin.version, "file": wheels[0].name,
                          "sha256": sha256_file(dest / wheels[0].name), "lock": pin.lock,
                          "built_from": {"file": sdist.name, "sha256": sha256_file(sdist)}})
            print(f"wheelhouse: built {wheels[0].name} from {sdist.name} (hash as the lock pins)", flush=True)
    return built


def _bootstrapped_venv(python: str, venv: Path, bootstrap: list[Pin], wheelhouse: Path) -> str:
    """A venv with the bootstrap lock's pip, setuptools and wheel, installed from the wheelhouse with hashes by the
    lock's own pip run from its wheel (checked against the lock's hashes before it runs)."""
    pip = next((p for p in bootstrap if p.name == "pip"), None)
    named = _files_by_dist(wheelhouse).get((pip.name, pip.version), []) if pip else []
    wheel = next((f for f in named if sha256_file(f) in pip.hashes), None)
    if wheel is None:
        raise KitError(f"{wheelhouse} holds no pip wheel with a hash the bootstrap lock pins: make it again.")
    subprocess.run([python, "-m", "venv", "--without-pip", str(venv)], check=True)
    with _requirements_file(bootstrap) as req:
        _offline_install(str(venv / "bin" / "python"), [str(wheel / "pip"), "install"], req, wheelhouse)
    return str(venv / "bin" / "python")


def _no_wheel_paragraph(pin: Pin, why: str, log: str) -> str:
    tail = "\n".join(log.splitlines()[-10:])
    return (f"{pin.name}=={pin.version} ({pin.lock}) has no wheel for the lock's Python and platform, and {why}, so "
            "the wheelhouse cannot hold it and an offline install would fail. Build a wheel of it on a host like the "
            "GPU host (same Python, same architecture) with `pip wheel --no-deps NAME==VERSION`, put it into the "
            "wheelhouse folder and add it to the manifest, or pick a version with wheels in requirements.in and run "
            "`nox -s lock`." + (f"\npip said:\n{tail}" if tail else ""))


def resolve_files(stack: str, lock_dir: Path, wheelhouse: Path) -> dict[Pin, tuple[Path, str]]:
    """Each pin -> (the wheelhouse file whose sha256 the lock, or for a built wheel the manifest, names; that hash).
    One paragraph for every missing or altered file."""
    path = wheelhouse / MANIFEST.format(stack=stack)
    if not path.is_file():
        raise KitError(f"{wheelhouse} has no {path.name}: it was not made for the {stack} stack. Make it where the "
                       f"index is reachable with `nox -s wheelhouse -- {stack} --dest {wheelhouse.name}` and copy the "
                       "whole folder.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise KitError(f"{path} cannot be read ({e}): copy the wheelhouse again.") from e
    if manifest.get("locks_sha256") != locks_sha256(lock_dir):
        raise KitError(f"{path} was made from other locks than images/{stack}/{LOCKS[0]} and {LOCKS[1]} of this "
                       f"checkout (the lock changed since): make the wheelhouse again with `nox -s wheelhouse -- "
                       f"{stack}`.")
    built = {b["name"]: b for b in manifest.get("built", [])}
    by_dist = _files_by_dist(wheelhouse)
    files, missing, altered = {}, [], []
    for pin in read_pins(lock_dir):
        allowed = (built[pin.name]["sha256"],) if pin.name in built else pin.hashes
        named = by_dist.get((pin.name, pin.version), [])
        # Only the files named like the pin are hashed: not the other stacks' files a shared folder holds.
        found = next(((f, h) for f in named if (h := sha256_file(f)) in allowed), None)
        if found is not None:
            files[pin] = found
            continue
        (altered if named else missing).append(
            f"{pin.name}=={pin.version}" + (f" ({', '.join(f.name for f in named)})" if named else ""))
    parts = [f"{what}: " + "; ".join(pins) for what, pins in (
        ("these files are there but their sha256 is not the one the lock (or the manifest, for a built wheel) pins, "
         "so they were altered or come from another lock", altered), ("these packages have no file at all", missing))
        if pins]
    if parts:
        raise KitError(f"The wheelhouse {wheelhouse} does not match images/{stack}/'s locks: " + ". ".join(parts) +
                       f". Nothing was installed. Make it again where the index is reachable (`nox -s wheelhouse -- "
                       f"{stack}`) and copy the whole folder.")
    return files


def _offline_install(python: str, pip: list[str], requirements: str, wheelhouse: Path, *extra: str) -> None:
    # --no-compile: Python writes the bytecode of what it imports on first use; compiling all of torch and vLLM up
    # front would add about a minute to every offline install for files never imported.
    cmd = [python, *pip, "--isolated", "--disable-pip-version-check", "--no-input", "--no-index", "--no-compile",
           "--find-links", str(wheelhouse), "--require-hashes", "--no-deps", *extra, "-r", requirements]
    _run_shown(cmd, "pip", "The wheelhouse's hashes were checked before, so this is the interpreter: the wheels are "
               "for the lock's Python (pass --python with that version).")


def make_venv_offline(stack: str, lock_dir: Path, wheelhouse: Path, python: str, venv: Path) -> Path:
    """Make venv from the wheelhouse with no index at all; a half-made venv is removed. Returns its python."""
    wheelhouse = wheelhouse.resolve()
    if not wheelhouse.is_dir():
        raise KitError(f"--wheelhouse {wheelhouse}: no such folder. Make it with `nox -s wheelhouse -- {stack}` and "
                       "copy it to this host.")
    t0 = time.monotonic()
    files = resolve_files(stack, lock_dir, wheelhouse)
    # cp312 wheels need Python 3.12: say so before pip does, in one paragraph.
    lock_python, _ = lock_target(lock_dir)
    have = subprocess.run([python, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"], capture_output=True,
                          text=True).stdout.strip()
    bound = sorted(f.name for f, _ in files.values() if f"-cp{lock_python.replace('.', '')}-" in f.name)
    if have != lock_python and bound:
        raise KitError(f"{python} is Python {have or '?'}, but the wheelhouse holds wheels built for Python "
                       f"{lock_python} only ({bound[0]} and {len(bound) - 1} more). Pass --python with a Python "
                       f"{lock_python} interpreter.")
    print(f"venv: {len(files)} files of {wheelhouse} match images/{stack}/'s locks ({time.monotonic() - t0:.0f} s)",
          flush=True)
    pins = list(files)
    with removed_if_half_made(venv):
        if venv.exists():
            shutil.rmtree(venv)
        venv_python = _bootstrapped_venv(python, venv, [p for p in pins if p.lock == LOCKS[0]], wheelhouse)
        # Each package with the hash of the very file checked above (a built wheel: the manifest's).
        main = [p for p in pins if p.lock == LOCKS[1]]
        with _requirements_file(main, {p: h for p, (_, h) in files.items()}) as req:
            _offline_install(venv_python, ["-m", "pip", "install"], req, wheelhouse, "--no-build-isolation")
        check = subprocess.run([venv_python, "-m", "pip", "check"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
        if check.returncode != 0:
            raise KitError(f"pip check failed in {venv}:\n{check.stdout.strip()}")
    print(f"venv: {venv} made from {wheelhouse} with no index, every hash checked, in {time.monotonic() - t0:.0f} s",
          flush=True)
    return venv / "bin" / "python"


def venv_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="nox -s venv --", description="Make .venv-STACK/, the local runner's interpreter, "
                                "from the stack's hashed locks (with --wheelhouse: from a wheelhouse, offline).")
    p.add_argument("stack", nargs="?", default="hf",
                   help="hf (default), vllm or vllm-0.20: which images/<stack>/ locks")
    p.add_argument("--python", default=sys.executable, help="base interpreter (default: the one running this)")
    p.add_argument("--wheelhouse", type=Path, help="install from this folder (made by `nox -s wheelhouse -- STACK`) "
                                                   "with no network at all, every file checked against the locks")
    p.add_argument("--venv", type=Path, help="where to make it (default .venv-STACK/, the one the local runner uses)")
    ns = p.parse_args(argv)
    locks = stack_locks(ns.stack)
    venv = (ns.venv or venv_python(locks.name).parent.parent).resolve()
    if ns.wheelhouse:
        make_venv_offline(locks.name, locks, ns.wheelhouse, ns.python, venv)
        if ns.venv is None:
            print(f"venv: `--runner local` and `nox -s demo` use {venv} by default", flush=True)
        return
    uv, t0 = find_uv("Making the local interpreter", make_command(ns.stack)), time.monotonic()
    target = venv / "bin" / "python"
    install = [uv, "pip", "install", "--python", str(target), "--require-hashes", "--no-deps"]
    env = dict(os.environ, UV_PYTHON_DOWNLOADS="never")  # use the given interpreter, never fetch one
    with removed_if_half_made(venv):
        for cmd in ([uv, "venv", "--clear", "--python", ns.python, str(venv)],
                    [*install, "-r", str(locks / "bootstrap.lock")],
                    [*install, "--no-build-isolation", "-r", str(locks / "requirements.lock")],
                    [uv, "pip", "check", "--python", str(target)]):
            _run_shown(cmd, "uv", "A network or certificate error behind a TLS-intercepting proxy needs SSL_CERT_FILE "
                       "pointing at the proxy's CA bundle.", env)
    print(f"venv: {venv} made from images/{locks.name}/*.lock in {time.monotonic() - t0:.0f} s"
          + ("" if ns.venv else "; `--runner local` and `nox -s demo` use it by default"), flush=True)


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
    lock_dir = stack_locks(ns.stack)
    stack, dest = lock_dir.name, ns.dest.resolve()
    pins = read_pins(lock_dir)
    python, platform = lock_target(lock_dir)
    dest.mkdir(parents=True, exist_ok=True)
    # --isolated: a machine's pip.conf (extra indexes, constraints) must not change what the lock's index serves.
    index = ["--isolated", "--disable-pip-version-check", "--index-url", "https://pypi.org/simple"]
    cert = ns.ca_bundle or next(filter(None, map(os.environ.get, ("KIT_CA_BUNDLE", "PIP_CERT", "SSL_CERT_FILE"))), None)
    index += ["--cert", str(cert)] if cert else []
    t0 = time.monotonic()
    print(f"wheelhouse: {len(pins)} packages of the {stack} locks ({lock_dir}) for Python {python} / {platform} "
          f"into {dest}", flush=True)
    no_wheel = _download_wheels(pins, dest, python, platform, index)
    built = _build_sdists(no_wheel, [p for p in pins if p.lock == LOCKS[0]], dest, index) if no_wheel else []
    manifest = {"format": "awq-kit-wheelhouse", "stack": stack, "locks_sha256": locks_sha256(lock_dir),
                "python": python, "platform": platform, "built": built}
    atomic_write_text(dest / MANIFEST.format(stack=stack), json.dumps(manifest, indent=2) + "\n")
    files = resolve_files(stack, lock_dir, dest)  # everything present and every hash right, or a paragraph
    size = sum(f.stat().st_size for f, _ in set(files.values()))
    shown = f"{size / 1e9:.2f} GB" if size >= 1e9 else f"{size / 1e6:.1f} MB"
    print(f"wheelhouse: {len(files)} files, {shown}, every hash checked, in {time.monotonic() - t0:.0f} s. "
          f"Carry the folder to the GPU host by any means (rsync -a {dest}/ HOST:{dest.name}/, a disk), then there: "
          f"`nox -s venv -- {stack} --wheelhouse {dest.name}` (or `python3 -m kit venv {stack} --wheelhouse "
          f"{dest.name}`), which needs no network.", flush=True)
