"""Deviations cover every package of the stack's lock, and the stack (hence the lock) is data: KIT_STACK."""
from __future__ import annotations

import importlib.metadata as md
import sys
from pathlib import Path

from bench import provenance
from kit.runners import RunnerOptions, Step

LOCK_HEADER = "# kit-lock: in-sha256=00 exclude-newer=2025-12-15T00:00:00Z python={py} platform=x86_64-manylinux_2_35\n"


def _installed(name: str):
    try:
        return md.version(name)
    except md.PackageNotFoundError:
        return None


def _fake_stack(root: Path, stack: str, lines: list[str], python: str) -> None:
    lock = root / "images" / stack / "requirements.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(LOCK_HEADER.format(py=python) + "".join(f"{l} \\\n    --hash=sha256:00\n" for l in lines))


def test_every_locked_package_is_compared_with_what_is_installed(monkeypatch):
    """The real hf lock, against this interpreter: each of its packages deviates exactly when it differs."""
    monkeypatch.delenv("KIT_STACK", raising=False)
    p = provenance.collect_provenance("hf", "cpu")
    locked = provenance.lock_versions("hf")
    assert len(locked) > 50 and p.pins == locked and p.pins_source == "images/hf/requirements.lock"
    for name, want in locked.items():
        if name == "python":
            continue
        have = _installed(name)
        expected = (f"{name} not installed (pinned {want})" if have is None
                    else f"{name} {have} (pinned {want})" if have != want else None)
        flagged = [d for d in p.deviations if d.startswith(name + " ")]
        assert flagged == ([expected] if expected else []), (name, flagged)
    # Packages beyond the four headline pins are compared: pydantic is locked and installed here.
    assert "pydantic" in locked and "triton" in locked and "safetensors" in locked and "numpy" in locked


def test_the_stack_comes_from_kit_stack_and_a_new_stack_needs_no_code(tmp_path, monkeypatch):
    pyd = md.version("pydantic")
    py = ".".join(sys.version.split()[0].split(".")[:2])
    _fake_stack(tmp_path, "newstack-1.0", [f"pydantic=={pyd}", "pytest==0.0.1", "no-such-package-kit==1.0"], py)
    monkeypatch.setattr(provenance, "KIT_ROOT", tmp_path)
    monkeypatch.setenv("KIT_STACK", "newstack-1.0")
    p = provenance.collect_provenance("hf", "cpu")
    assert p.pins_source == "images/newstack-1.0/requirements.lock"
    assert p.pins == {"python": py, "pydantic": pyd, "pytest": "0.0.1", "no-such-package-kit": "1.0"}
    assert p.deviations == [f"pytest {md.version('pytest')} (pinned 0.0.1)",
                            "no-such-package-kit not installed (pinned 1.0)"]


def test_python_pin_comes_from_the_lock_header(tmp_path, monkeypatch):
    _fake_stack(tmp_path, "old-python", [f"pydantic=={md.version('pydantic')}"], "3.7")
    monkeypatch.setattr(provenance, "KIT_ROOT", tmp_path)
    monkeypatch.setenv("KIT_STACK", "old-python")
    assert provenance.collect_provenance("hf", "cpu").deviations == [
        f"python {sys.version.split()[0]} (pinned 3.7)"]


def test_a_stack_without_a_lock_pins_nothing_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "KIT_ROOT", tmp_path)
    monkeypatch.delenv("KIT_STACK", raising=False)
    p = provenance.collect_provenance("vllm", "cpu")
    assert p.pins == {} and p.deviations == [] and p.pins_source == "nothing pinned: no images/vllm/requirements.lock"


def test_docker_runner_tells_the_container_its_stack(tmp_path):
    from kit.runners.docker import container_env

    opts = RunnerOptions(results_dir=tmp_path, output_dir=tmp_path, cache_dir=tmp_path, hf_home=tmp_path)
    assert container_env(opts, {}, "vllm")["KIT_STACK"] == "vllm"
    assert container_env(opts, {}, "hf")["KIT_STACK"] == "hf"


def test_local_runner_tells_the_child_its_stack(tmp_path, monkeypatch):
    from kit import wheelhouse
    from kit.runners.local import run_local

    # This host interpreter has no torch or vllm: require only what it has, so the stack check passes for real.
    monkeypatch.setitem(wheelhouse.STACK_MODULES, "vllm", ("pydantic",))

    out = tmp_path / "stack.txt"
    code = f"import os; open({str(out)!r}, 'w').write(os.environ['KIT_STACK'])"
    opts = RunnerOptions(runner="local", python=sys.executable, results_dir=tmp_path / "r",
                         output_dir=tmp_path / "o", cache_dir=tmp_path / "c")
    run_local(Step(stack="vllm", argv=("-c", code)), opts)
    assert out.read_text() == "vllm"
