"""The committed locks match their .in files, and the Dockerfiles install them the way the kit promises.

Only what the commit decides: each lock records the sha256 of the .in it was resolved from, its header is the
command that made it, every direct pin of the .in is in the lock at a matching version, and every package carries
hashes. No test here asks a package index: what a fresh resolution would pick depends on what the index serves
that day (docs/images.md, "Why a re-resolution drifts"), so that comparison is `nox -s lock -- --check`, run when
you choose, and never part of `nox -s tests`.
"""
from __future__ import annotations

import hashlib
import re
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from kit import images  # noqa: E402

PAIRS = [(stack, infile, lock) for stack in images.STACKS for infile, lock in images.LOCK_PAIRS]
IDS = [f"{s}/{lock}" for s, _, lock in PAIRS]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _direct_pins(in_text: str) -> dict[str, str]:
    """{name: specifier} of the .in's requirement lines."""
    pins = {}
    for line in in_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", line)
        assert m, f"unparsable requirement line {line!r}"
        pins[_norm(m.group(1))] = m.group(2).replace(" ", "")
    return pins


def _satisfies(version: str, spec: str) -> bool:
    """Enough of PEP 440 for the .in files: ==, >=, <, <=, >, comma-separated, numeric versions."""
    def key(v: str) -> tuple:
        return tuple(int(x) for x in re.findall(r"\d+", v.split("+")[0])[:4])

    for clause in filter(None, spec.split(",")):
        m = re.match(r"^(==|>=|<=|<|>|!=)(.+)$", clause)
        assert m, f"unsupported specifier {clause!r}"
        op, want = m.groups()
        a, b = key(version), key(want)
        n = max(len(a), len(b))
        a, b = a + (0,) * (n - len(a)), b + (0,) * (n - len(b))
        if not {"==": a == b, ">=": a >= b, "<=": a <= b, "<": a < b, ">": a > b, "!=": a != b}[op]:
            return False
    return True


@pytest.mark.parametrize("stack,infile,lockfile", PAIRS, ids=IDS)
def test_lock_records_its_in_file(stack, infile, lockfile):
    d = images.stack_dir(stack)
    lock_text = (d / lockfile).read_text()
    recorded = images.recorded_in_hash(lock_text)
    assert recorded, f"{d / lockfile} has no '# kit-lock: in-sha256=' header: regenerate it with `nox -s lock`"
    assert recorded == hashlib.sha256((d / infile).read_bytes()).hexdigest(), (
        f"{d / infile} changed since {lockfile} was generated: run `nox -s lock` and commit the new lock")
    assert f"exclude-newer={images.STACK_INFO[stack].exclude_newer}" in lock_text
    assert f"python={images.LOCK_PYTHON}" in lock_text and f"platform={images.LOCK_PLATFORM}" in lock_text


@pytest.mark.parametrize("stack,infile,lockfile", PAIRS, ids=IDS)
def test_lock_pins_direct_requirements_with_hashes(stack, infile, lockfile):
    d = images.stack_dir(stack)
    reqs = images.lock_requirements((d / lockfile).read_text())
    assert reqs, f"{d / lockfile} pins nothing"
    for name, spec in _direct_pins((d / infile).read_text()).items():
        assert name in reqs, f"{name} (from {infile}) is missing from {lockfile}"
        version = reqs[name][0]
        assert _satisfies(version, spec), f"{lockfile} pins {name}=={version}, but {infile} asks for {spec!r}"
    unhashed = [n for n, (_, hashes) in reqs.items() if not hashes]
    assert not unhashed, f"{lockfile}: packages without --hash: {unhashed}"


def test_study_pins():
    """The versions of the published study, exactly."""
    hf = images.lock_requirements((images.stack_dir("hf") / "requirements.lock").read_text())
    vllm = images.lock_requirements((images.stack_dir("vllm") / "requirements.lock").read_text())
    assert hf["torch"][0] == "2.9.1" and hf["transformers"][0] == "4.51.3" and hf["autoawq"][0] == "0.2.9"
    assert vllm["vllm"][0] == "0.12.0" and vllm["torch"][0] == "2.9.0"
    assert vllm["flashinfer-python"][0] == "0.5.3" and vllm["xgrammar"][0] == "0.1.27"
    # The bootstrap lock (pip/setuptools/wheel) agrees with the main lock where both pin a package.
    for stack, main in (("hf", hf), ("vllm", vllm)):
        boot = images.lock_requirements((images.stack_dir(stack) / "bootstrap.lock").read_text())
        assert set(boot) == {"pip", "setuptools", "wheel"}
        for name, (version, _) in boot.items():
            if name in main:
                assert main[name][0] == version, f"{stack}: bootstrap pins {name}=={version}, main lock {main[name][0]}"


def test_versions_shown_elsewhere_are_the_locks(tmp_path, monkeypatch):
    """Image titles, the study's vLLM version and sample results read the locks: no second copy to update."""
    from core import rules
    from samples import make_bench_result

    assert images.stack_title("hf") == "transformers 4.51.3 + autoawq 0.2.9 (torch 2.9.1)"
    assert images.stack_title("vllm") == "vLLM 0.12.0 (torch 2.9.0)"
    assert images.stack_title("vllm-0.20") == "vLLM 0.20.0 (torch 2.11.0)"
    assert (rules.VLLM_VERSION, rules.STUDY_SERIES) == ("0.12.0", "0.12")
    assert rules.STUDY_SERIES in rules.MIN_CAPABILITY_BY_SERIES
    vllm_lock = images.lock_requirements((images.stack_dir("vllm") / "requirements.lock").read_text())
    sample = make_bench_result(label="vLLM (awq)").provenance
    assert sample.libraries == {n: vllm_lock[n][0] for n in ("torch", "vllm", "transformers")} == sample.pins
    fake = tmp_path / "images"
    (fake / "vllm").mkdir(parents=True)
    (fake / "vllm" / "requirements.lock").write_text("torch==9.9 \\\n    --hash=sha256:00\nvllm==1.2.3\n")
    monkeypatch.setattr(images, "IMAGES_DIR", fake)
    assert images.stack_title("vllm") == "vLLM 1.2.3 (torch 9.9)"


def test_dockerfile_contract():
    text = images.dockerfile().read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.M | re.I), "a '# syntax=' line makes BuildKit pull a frontend"
    assert re.search(r"^ARG BASE_IMAGE=ubuntu:24\.04@sha256:[0-9a-f]{64}$", text, re.M), "base must be digest-pinned"
    assert "--require-hashes" in text and "--no-build-isolation" in text and "pip check" in text
    assert "--mount=type=secret,id=ca" in text and "--mount=type=cache" in text
    copies = re.findall(r"^(?:COPY|ADD)\s+(.*)$", text, re.M)
    assert copies and all(set(c.split()[:-1]) <= {"bootstrap.lock", "requirements.lock"} for c in copies), (
        f"only the locks may be copied into the image (the kit is mounted at run time): {copies}")
    assert "kit.lock-hash" in text and "WORKDIR /kit" in text and "PYTHONPATH=/kit" in text
    assert not re.search(r"HF_TOKEN|HUGGING_FACE_HUB_TOKEN", text), "no token may be referenced at build time"
    # The per-stack build args only label the image: declared after the last RUN, they invalidate no layer.
    last_run = max(m.start() for m in re.finditer(r"^RUN ", text, re.M))
    for arg in ("STACK", "PINS", "LOCK_HASH", "CONTENT_HASH"):
        assert text.index(f"ARG {arg}") > last_run, arg


@pytest.mark.parametrize("stack", images.STACKS)
def test_a_stack_is_a_folder_of_locks(stack):
    d = images.stack_dir(stack)
    assert not (d / "Dockerfile").exists(), "one Dockerfile for every stack: images/Dockerfile"
    assert {"bootstrap.lock", "requirements.lock"} <= {p.name for p in d.iterdir()}
    pins = images.stack_pins(stack)
    assert pins and all("==" in p for p in pins.split())


def test_image_tag_is_a_content_hash(tmp_path, monkeypatch):
    """The tag changes with the Dockerfile, the locks and the base override, and with nothing else."""
    monkeypatch.delenv("KIT_BASE_IMAGE", raising=False)
    tag = images.image_tag("hf")
    assert re.fullmatch(r"awq-kit-hf:[0-9a-f]{16}", tag)
    assert images.image_tag("hf", "kit-base:bookworm") != tag
    assert images.image_tag("vllm") != tag
    fake = tmp_path / "images"
    shutil.copytree(images.IMAGES_DIR, fake)
    monkeypatch.setattr(images, "IMAGES_DIR", fake)
    assert images.image_tag("hf") == tag
    (fake / "hf" / "requirements.in").write_text((fake / "hf" / "requirements.in").read_text() + "\n# comment\n")
    assert images.image_tag("hf") == tag, "the .in is not part of the image: only the lock is"
    lock = fake / "hf" / "requirements.lock"
    lock.write_text(lock.read_text() + "\n")
    changed_lock = images.image_tag("hf")
    assert changed_lock != tag
    vllm = images.image_tag("vllm")
    (fake / "Dockerfile").write_text((fake / "Dockerfile").read_text() + "\n# comment\n")
    assert images.image_tag("hf") != changed_lock and images.image_tag("vllm") != vllm, "the Dockerfile is every stack's"


@pytest.mark.parametrize("stack,infile,lockfile", PAIRS, ids=IDS)
def test_lock_header_is_the_command_that_made_it(stack, infile, lockfile):
    """The first three lines are what `nox -s lock` writes for this stack today (uv's version aside): a changed
    date, Python, platform or index in kit/images.py without a new lock fails here."""
    text = (images.stack_dir(stack) / lockfile).read_text()
    head = text.splitlines(keepends=True)[:3]
    uv_version = re.search(r"\(([^()]*(?:\([^()]*\))?[^()]*)\)\n$", head[2])
    assert uv_version, f"{lockfile}: the kit-lock line does not end with the uv version in parentheses: {head[2]!r}"
    expected = images.lock_header(stack, infile, images.recorded_in_hash(text), uv_version.group(1))
    assert "".join(head) == expected, f"{lockfile}: header is not what `nox -s lock` writes; run it and commit"
    resolver_args = images.uv_compile_command("uv", infile, "OUT", images.STACK_INFO[stack].exclude_newer)
    assert " ".join(a for a in resolver_args if a not in images.UNRECORDED_ARGS + ("OUT",)) in head[1]


def test_drift_is_reported_package_by_package():
    """What `nox -s lock -- --check` prints: one line per package whose version or hashes moved."""
    old = "a==1.0 \\\n    --hash=sha256:" + "1" * 64 + "\nb==2.0 \\\n    --hash=sha256:" + "2" * 64 + "\n"
    new = ("a==1.1 \\\n    --hash=sha256:" + "3" * 64 + "\nb==2.0 \\\n    --hash=sha256:" + "2" * 64
           + " \\\n    --hash=sha256:" + "4" * 64 + "\nc==0.1 \\\n    --hash=sha256:" + "5" * 64 + "\n")
    assert images.lock_drift(old, new) == ["a 1.0 -> 1.1", "b 2.0: hashes changed (+1 -0)", "c (new) 0.1"]
    assert images.lock_drift(new, old) == ["a 1.1 -> 1.0", "b 2.0: hashes changed (+0 -1)", "c 0.1 (removed)"]
    assert images.lock_drift(old, old) == []
