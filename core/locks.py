"""The stacks' hashed locks, images/<stack>/requirements.lock: the one place where versions are written."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Optional

from core import ROOT as KIT_ROOT

_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s;\\]+)(.*)$")
_PYTHON = re.compile(r"^# kit-lock:.*\bpython=(\S+)", re.M)


def normalize(name: str) -> str:
    """PEP 503 name: "Flashinfer_Python" -> "flashinfer-python"."""
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_requirements(text: str) -> dict[str, tuple[str, tuple[str, ...]]]:
    """{name: (version, sorted hashes)} of a hashed lock; comments and formatting ignored."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for line in re.sub(r"\\\n", " ", text).splitlines():
        if m := _REQUIREMENT.match(line.split("#", 1)[0].strip()):
            hashes = tuple(sorted(re.findall(r"--hash=(sha256:[0-9a-f]{64})", m.group(3))))
            out[normalize(m.group(1))] = (m.group(2), hashes)
    return out


def lock_path(stack: str, root: Optional[Path] = None) -> Path:
    return (root or KIT_ROOT) / "images" / stack / "requirements.lock"


def lock_versions(stack: str, root: Optional[Path] = None) -> dict[str, str]:
    """name -> version of every package of images/<stack>/requirements.lock ({} when there is none), plus
    "python" from its `# kit-lock: ... python=X.Y` header when it has one."""
    try:
        text = lock_path(stack, root).read_text(encoding="utf-8")
    except OSError:
        return {}
    header = _PYTHON.search(text)
    found = {"python": header.group(1)} if header else {}
    found.update((name, version) for name, (version, _) in lock_requirements(text).items())
    return found
