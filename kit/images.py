"""The pinned images: hashed locks (`nox -s lock`), content-hash tags, build-or-reuse (docs/images.md).

The tag ``awq-kit-<stack>:<content hash>`` hashes the Dockerfile, the stack, its locks and the base-image override;
the kit's code is mounted at run time, never baked, so a code-only change keeps the tag and every layer. docs/images.md
describes KIT_BASE_IMAGE, KIT_CA_BUNDLE and KIT_BUILD_VERBOSE.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from kit import KIT_ROOT
from core.errors import KitError
from core.locks import lock_requirements, lock_versions
from kit.docker_client import DockerClient, check_daemon, check_disk, find_docker, image_size_bytes, inspect_image_id
from kit.wheelhouse import find_uv

IMAGES_DIR = KIT_ROOT / "images"
STACKS = ("hf", "vllm", "vllm-0.20")

# Lock resolution parameters: part of the lock's identity, recorded in each lock's header. The study's stacks
# are resolved as of 2025-12-15 (vLLM 0.12.0's month); vllm-0.20 needs a later date (StackInfo.exclude_newer).
EXCLUDE_NEWER = "2025-12-15T00:00:00Z"
LOCK_PYTHON = "3.12"
LOCK_PLATFORM = "x86_64-manylinux_2_35"
INDEX_URL = "https://pypi.org/simple"
LOCK_PAIRS = (("bootstrap.in", "bootstrap.lock"), ("requirements.in", "requirements.lock"))


@dataclass(frozen=True)
class StackInfo:
    # The packages that name the stack in its title, before its torch (versions: the lock's).
    headline: tuple[str, ...]
    # Free disk (GB) a cold build needs: image + BuildKit's pip cache + unpacking headroom.
    build_free_gb: float
    exclude_newer: str = EXCLUDE_NEWER


STACK_INFO = {
    "hf": StackInfo(("transformers", "autoawq"), 15.0),
    "vllm": StackInfo(("vllm",), 20.0),
    # vLLM 0.20 is the first vLLM that runs on a CUDA 13 (torch 2.11) GPU host.
    "vllm-0.20": StackInfo(("vllm",), 22.0, "2026-11-28T00:00:00Z"),
}


def stack_title(stack: str) -> str:
    """"vLLM 0.12.0 (torch 2.9.0)": the stack's headline packages and its torch, at the versions its lock pins."""
    versions = lock_versions(stack, IMAGES_DIR.parent)
    named = " + ".join(f"{'vLLM' if n == 'vllm' else n} {versions.get(n, '?')}" for n in STACK_INFO[stack].headline)
    return f"{named} (torch {versions.get('torch', '?')})"


# `nox -s bench-vllm -- --vllm X` picks the stack; 0.12 (the study's version) is the default.
VLLM_STACKS = {"0.12": "vllm", "0.20": "vllm-0.20"}


def vllm_series_of(stack: str) -> Optional[str]:
    """"vllm-0.20" -> "0.20"; None (false) for a stack without vLLM."""
    return next((series for series, s in VLLM_STACKS.items() if s == stack), None)


def dockerfile() -> Path:
    """The one Dockerfile of every stack (a function: tests move IMAGES_DIR); a stack is its folder of locks."""
    return IMAGES_DIR / "Dockerfile"


def stack_dir(stack: str) -> Path:
    if stack not in STACKS:
        raise KitError(f"unknown image stack {stack!r}; expected one of {', '.join(STACKS)}.")
    return IMAGES_DIR / stack


def _sha256(*parts: bytes) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(len(p).to_bytes(8, "big"))
        h.update(p)
    return h.hexdigest()


def lock_hash(stack: str) -> str:
    """sha256 over both lock files of a stack: what the image's venv was installed from."""
    d = stack_dir(stack)
    parts: list[bytes] = []
    for _, lock in LOCK_PAIRS:
        path = d / lock
        if not path.is_file():
            raise KitError(f"{path} is missing. Run `nox -s lock` to generate it from {path.with_suffix('.in').name}.")
        parts += [lock.encode(), path.read_bytes()]
    return _sha256(*parts)


def base_identity(docker: DockerClient, base: Optional[str]) -> Optional[str]:
    """What the tag hashes for a base override: ``name@<local image id>`` when the name is a local image and not
    digest-pinned, so that re-making e.g. kit-base:bookworm (a new debootstrap) yields new images."""
    if not base or "@sha256:" in base:
        return base
    image_id = inspect_image_id(docker, base)
    return f"{base}@{image_id}" if image_id else base


def current_tag(stack: str, docker: DockerClient) -> str:
    """The tag ``ensure_image`` would use now (KIT_BASE_IMAGE and its local id included)."""
    return image_tag(stack, base_identity(docker, os.environ.get("KIT_BASE_IMAGE")))


def default_base_image(stack: str) -> str:
    stack_dir(stack)  # an unknown stack is an error here too
    text = dockerfile().read_text(encoding="utf-8")
    m = re.search(r"^ARG BASE_IMAGE=(\S+)", text, re.M)
    if not m:
        raise KitError(f"{dockerfile()}: no `ARG BASE_IMAGE=...` line.")
    return m.group(1)


def stack_pins(stack: str) -> str:
    """The `name==version` lines of the stack's requirements.in (its image's kit.pins label)."""
    lines = (stack_dir(stack) / "requirements.in").read_text(encoding="utf-8").splitlines()
    return " ".join(l.strip() for l in lines if "==" in l and not l.lstrip().startswith("#"))


def content_hash(stack: str, base_image: Optional[str] = None) -> str:
    """The image's identity: the Dockerfile, the stack and its locks (+ the base-image override, when there is one)."""
    parts = [b"Dockerfile", dockerfile().read_bytes(), b"stack", stack.encode(), b"lock", lock_hash(stack).encode()]
    if base_image:
        parts += [b"base", base_image.encode()]
    return _sha256(*parts)


def image_tag(stack: str, base_image: Optional[str] = None) -> str:
    return f"awq-kit-{stack}:{content_hash(stack, base_image)[:16]}"


@dataclass
class ImageInfo:
    stack: str
    tag: str
    image_id: str
    lock_hash: str
    base_image: str
    build_seconds: Optional[float] = None  # None: reused an existing image
    cached_steps: int = 0
    run_steps: int = 0

    def env(self) -> dict[str, str]:
        """The KIT_IMAGE_* part of the runner's environment contract."""
        return {"KIT_IMAGE_ID": self.image_id, "KIT_IMAGE_TAG": self.tag, "KIT_LOCK_HASH": self.lock_hash}


_STEP_LINE = re.compile(r"^(#\d+) (\[[^\]]+\] .*|CACHED|DONE \S+|ERROR.*)$")
# pip's milestones inside a long RUN step: enough to see progress without every download bar.
_PIP_LINE = re.compile(r"^#\d+ [\d.]+ (Collecting \S+|  Downloading .*\(\d+(\.\d+)? [MG]B\)|Building wheel.*|"
                       r"Installing collected packages|Successfully installed|No broken requirements found|"
                       r"ERROR.*|E: .*)")


def build_command(docker: DockerClient, stack: str, tag: str, *, base_image: Optional[str],
                  ca_bundle: Optional[Path]) -> list[str]:
    d = stack_dir(stack)
    cmd = [docker.path, "build", "--progress=plain", "--tag", tag,
           "--build-arg", f"STACK={stack}", "--build-arg", f"PINS={stack_pins(stack)}",
           "--build-arg", f"LOCK_HASH={lock_hash(stack)}",
           "--build-arg", f"CONTENT_HASH={content_hash(stack, base_identity(docker, base_image))}",
           "--file", str(dockerfile())]
    if base_image:
        cmd += ["--build-arg", f"BASE_IMAGE={base_image}"]
    if ca_bundle:
        # A BuildKit secret: mounted at /run/secrets/ca only during the RUN that asks for it, never in a layer.
        cmd += ["--secret", f"id=ca,src={ca_bundle}"]
    cmd.append(str(d))  # build context: the stack's folder only (its locks), never the kit's code
    return cmd


def resolve_ca_bundle(ca_bundle: Optional[Path]) -> Optional[Path]:
    ca_bundle = ca_bundle or os.environ.get("KIT_CA_BUNDLE")
    if not ca_bundle:
        return None
    if not Path(ca_bundle).is_file():
        raise KitError(f"CA bundle {ca_bundle} (from --ca-bundle or KIT_CA_BUNDLE) is not a file. Pass the PEM "
                       "bundle that holds your proxy's CA, often /etc/ssl/certs/ca-certificates.crt.")
    return Path(ca_bundle).resolve()


def ensure_image(stack: str, docker: DockerClient, *, ca_bundle: Optional[Path] = None,
                 log_dir: Optional[Path] = None, force_build: bool = False) -> ImageInfo:
    """Reuse ``awq-kit-<stack>:<content hash>`` if present, else build it with BuildKit (progress printed).

    force_build=True runs the build even when the tag exists (BuildKit reuses every cached layer).
    """
    base_override = os.environ.get("KIT_BASE_IMAGE")
    base = base_override or default_base_image(stack)
    tag = current_tag(stack, docker)
    lh = lock_hash(stack)
    if not force_build:
        image_id = inspect_image_id(docker, tag)
        if image_id:
            print(f"[image {stack}] reusing {tag} ({image_id[:19]})")
            return ImageInfo(stack, tag, image_id, lh, base)

    ca = resolve_ca_bundle(ca_bundle)
    log_dir = Path(log_dir) if log_dir else Path(tempfile.gettempdir())
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / f"build-{stack}-{tag.split(':')[1]}.log"
    cmd = build_command(docker, stack, tag, base_image=base_override, ca_bundle=ca)
    print(f"[image {stack}] building {tag}: {stack_title(stack)} on {base}"
         f"{' (CA bundle as BuildKit secret)' if ca else ''}; full log: {log_file}")
    verbose = os.environ.get("KIT_BUILD_VERBOSE") == "1"
    t0 = time.monotonic()
    tail: list[str] = []
    steps: dict[str, bool] = {}  # BuildKit vertex "#N" of a Dockerfile step ([k/n]) -> cached?
    with open(log_file, "w", encoding="utf-8") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                                env=docker.env(), errors="replace")
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log.write(line)
                line = line.rstrip("\n")
                tail = (tail + [line])[-40:]
                m = _STEP_LINE.match(line)
                if m:
                    vertex, what = m.group(1), m.group(2)
                    if what.startswith("[") and not what.startswith("[internal]") and "] FROM " not in what:
                        steps.setdefault(vertex, False)
                    elif what == "CACHED" and vertex in steps:
                        steps[vertex] = True
                if verbose or m or _PIP_LINE.match(line):
                    shown = line if verbose or len(line) <= 160 else line[:157] + "..."
                    print(f"[image {stack}] {time.monotonic() - t0:6.1f}s {shown}")
            rc = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            proc.wait()
            raise
    cached = sum(steps.values())
    ran = len(steps) - cached
    seconds = time.monotonic() - t0
    if rc != 0:
        text = "\n".join(tail)
        if "CERTIFICATE_VERIFY_FAILED" in text or "SSLError" in text:
            hint = (" pip could not verify PyPI's certificate: behind a TLS-intercepting proxy pass its CA bundle "
                    "with --ca-bundle PATH or KIT_CA_BUNDLE=PATH (often /etc/ssl/certs/ca-certificates.crt); it "
                    "reaches the build as a BuildKit secret and never a layer.")
        elif any(m in text for m in ("pull access denied", "failed to resolve source metadata", "failed to do request",
                                     "repository does not exist")):
            hint = (f" The base image KIT_BASE_IMAGE={base} is neither a local image nor pullable. Check the name with "
                    "`docker images`, or build a local base (docs/images.md: debootstrap + docker import), or unset "
                    "KIT_BASE_IMAGE to use the Dockerfile's digest-pinned ubuntu:24.04." if base_override else
                    f" The base image {base} could not be pulled. Without registry access, set KIT_BASE_IMAGE to a "
                    "local Debian/Ubuntu image with python3 >= 3.10 (docs/images.md: debootstrap + docker import).")
        elif "no space left" in text:
            hint = " The disk is full: free space under the docker root (e.g. `docker builder prune`)."
        else:
            hint = ""
        raise KitError(f"building the {stack} image {tag} failed (exit code {rc}) after {seconds:.0f}s.{hint} "
                       f"Last lines:\n" + "\n".join(tail[-15:]) + f"\nFull log: {log_file}")
    image_id = inspect_image_id(docker, tag)
    if not image_id:
        raise KitError(f"docker build reported success but {tag} is not in `docker images`; see {log_file}.")
    size = image_size_bytes(docker, tag)
    print(f"[image {stack}] built {tag} ({image_id[:19]}) in {seconds:.1f}s"
         + (f", {size / 1e9:.2f} GB" if size else "") + f"; {cached} of {cached + ran} step(s) cached")
    return ImageInfo(stack, tag, image_id, lh, base, build_seconds=seconds, cached_steps=cached, run_steps=ran)


# Flags of the resolution that do not change what it picks: the header's command line leaves them out.
UNRECORDED_ARGS = ("--output-file", "--no-config", "--no-header", "--quiet")


def uv_compile_command(uv: str, infile: str, outfile: str, exclude_newer: str = EXCLUDE_NEWER) -> list[str]:
    return [uv, "pip", "compile", infile, "--output-file", outfile,
            "--python-version", LOCK_PYTHON, "--python-platform", LOCK_PLATFORM,
            "--generate-hashes", "--exclude-newer", exclude_newer,
            "--index-url", INDEX_URL, "--no-config", "--no-header", "--quiet"]


def lock_header(stack: str, infile: str, in_sha: str, uv_version: str) -> str:
    exclude_newer = STACK_INFO[stack].exclude_newer
    # The resolution's command line, without the flags that do not change what it picks.
    command = " ".join(a for a in uv_compile_command("uv", infile, "", exclude_newer) if a and a not in UNRECORDED_ARGS)
    return (
        f"# images/{stack}/{infile.replace('.in', '.lock')}: generated by `nox -s lock` from {infile}; do not edit.\n"
        f"#   {command}\n"
        f"# kit-lock: in-sha256={in_sha} exclude-newer={exclude_newer} python={LOCK_PYTHON} "
        f"platform={LOCK_PLATFORM} ({uv_version})\n"
    )


def compile_lock(stack: str, infile: str, uv: str) -> str:
    """The lock images/<stack>/<infile> resolves to today, header included. Needs PyPI (about 3 s)."""
    src = stack_dir(stack) / infile
    with tempfile.TemporaryDirectory() as tmp:
        # Compile a copy in an empty folder: no existing lock is read as "preferences", no uv.toml applies.
        shutil.copy(src, Path(tmp) / infile)
        r = subprocess.run(uv_compile_command(uv, infile, "out.lock", STACK_INFO[stack].exclude_newer), cwd=tmp,
                           env=dict(os.environ, UV_PYTHON_DOWNLOADS="never"), capture_output=True, text=True)
        if r.returncode != 0:
            hint = (" uv could not verify PyPI's certificate: set SSL_CERT_FILE to your CA bundle (or pass "
                    "--ca-bundle)." if "certificate" in r.stderr.lower() or "tls" in r.stderr.lower() else "")
            raise KitError(f"resolving {src} with uv failed (exit code {r.returncode}).{hint}\n{r.stderr.strip()}")
        body = (Path(tmp) / "out.lock").read_text(encoding="utf-8")
    version = subprocess.run([uv, "--version"], capture_output=True, text=True).stdout.strip() or "uv"
    return lock_header(stack, infile, hashlib.sha256(src.read_bytes()).hexdigest(), version) + body


def lock_drift(committed: str, fresh: str) -> list[str]:
    """One line per package whose pinned version or hashes differ between two lock texts."""
    old, new = lock_requirements(committed), lock_requirements(fresh)
    lines = []
    for name in sorted(set(old) | set(new)):
        if name not in new:
            lines.append(f"{name} {old[name][0]} (removed)")
        elif name not in old:
            lines.append(f"{name} (new) {new[name][0]}")
        elif old[name][0] != new[name][0]:
            lines.append(f"{name} {old[name][0]} -> {new[name][0]}")
        elif old[name][1] != new[name][1]:
            added, gone = set(new[name][1]) - set(old[name][1]), set(old[name][1]) - set(new[name][1])
            lines.append(f"{name} {old[name][0]}: hashes changed (+{len(added)} -{len(gone)})")
    return lines


def recorded_in_hash(lock_text: str) -> Optional[str]:
    m = re.search(r"^# kit-lock: in-sha256=([0-9a-f]{64})", lock_text, re.M)
    return m.group(1) if m else None


def lock_main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="nox -s lock --",
                                description="Regenerate images/*/{bootstrap,requirements}.lock from their .in files "
                                            f"(uv, hashed, --exclude-newer per stack, Python {LOCK_PYTHON}, "
                                            f"{LOCK_PLATFORM}).")
    p.add_argument("--stack", action="append", choices=STACKS, help="only this stack (repeatable; default: all)")
    p.add_argument("--check", action="store_true", help="do not write: fail if a committed lock differs")
    p.add_argument("--ca-bundle", type=Path, help="CA bundle for a TLS-intercepting proxy (sets SSL_CERT_FILE for uv)")
    ns = p.parse_args(argv)
    if ns.ca_bundle:
        os.environ["SSL_CERT_FILE"] = str(resolve_ca_bundle(ns.ca_bundle))
    uv = find_uv("Resolving the locks", "nox -s lock")
    stale = []
    for stack in ns.stack or STACKS:
        for infile, lockfile in LOCK_PAIRS:
            t0 = time.monotonic()
            new = compile_lock(stack, infile, uv)
            committed = stack_dir(stack) / lockfile
            old = committed.read_text(encoding="utf-8") if committed.is_file() else ""
            drift = lock_drift(old, new)
            if recorded_in_hash(old) != recorded_in_hash(new):
                drift.insert(0, f"{stack}/{infile} changed since the lock was made")
            if ns.check:
                status = f"DRIFT in {len(drift)} package(s)" if drift else "up to date"
                stale += [str(committed)] if drift else []
            else:
                committed.write_text(new, encoding="utf-8")
                status = "written" if drift else "unchanged"
            n = len(lock_requirements(new))
            print(f"lock: images/{stack}/{lockfile}: {n} packages, {status} ({time.monotonic() - t0:.1f}s)")
            for line in drift if ns.check else ():
                print(f"lock:   {line}")
    if stale:
        raise KitError(f"a fresh resolution today differs from these committed locks: {', '.join(stale)} (package by "
                       "package above). A lock is the record of what was resolved, so this is not an error in the "
                       "commit: the index now serves files it did not serve then (docs/images.md, \"Why a "
                       "re-resolution drifts\"). Run `nox -s lock` and commit only if you mean to move the stack.")


def images_main(argv: list[str]) -> None:
    """`python -m kit.images build|bench`: build (or reuse) the images; time cold and warm builds."""
    p = argparse.ArgumentParser(prog="python -m kit.images", description=images_main.__doc__)
    p.add_argument("action", choices=("build", "bench"),
                   help="build: build or reuse; bench: time a build (cold with --cold) and a warm rebuild")
    p.add_argument("--stack", action="append", choices=STACKS, help="only this stack (repeatable; default: all)")
    p.add_argument("--cold", action="store_true",
                   help="bench: first remove the stack's image and prune ALL BuildKit cache (cache mounts included)")
    p.add_argument("--ca-bundle", type=Path, help="CA bundle passed as the BuildKit secret (also KIT_CA_BUNDLE)")
    p.add_argument("--log-dir", type=Path, default=KIT_ROOT / "output" / "logs")
    ns = p.parse_args(argv)
    client = find_docker()
    check_daemon(client)  # disk per stack below: a --cold bench first removes the image
    rows = []
    for stack in ns.stack or STACKS:
        tag = current_tag(stack, client)
        if ns.action == "bench" and ns.cold:
            client.run("rmi", "-f", tag, timeout=None)
            client.run("builder", "prune", "-af", timeout=None)
        if not inspect_image_id(client, tag):
            check_disk(client, STACK_INFO[stack].build_free_gb, f"building the {stack} image")
        first = ensure_image(stack, client, ca_bundle=ns.ca_bundle, log_dir=ns.log_dir)
        warm = "-"
        if ns.action == "bench":
            rebuilt = ensure_image(stack, client, ca_bundle=ns.ca_bundle, log_dir=ns.log_dir, force_build=True)
            warm = f"{rebuilt.build_seconds:.1f}"
            if rebuilt.image_id != first.image_id or rebuilt.run_steps:
                print(f"warning: the warm rebuild of {stack} re-ran {rebuilt.run_steps} step(s)")
        cold = "reused" if first.build_seconds is None else f"{first.build_seconds:.1f}"
        size = (image_size_bytes(client, tag) or 0) / 1e9
        rows.append(f"{stack:<6} {tag:<30} {first.image_id[:19]:<20} {cold:>10} {warm:>9} {size:>9.2f}")
    print(f"\n{'stack':<6} {'tag':<30} {'id':<20} {'build (s)':>10} {'warm (s)':>9} {'size (GB)':>9}", *rows, sep="\n")



if __name__ == "__main__":
    try:
        images_main(sys.argv[1:])
    except KitError as e:
        print(f"\nerror: {e}", file=sys.stderr)
        raise SystemExit(e.exit_code)
