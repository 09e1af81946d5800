"""`python -m kit` outside nox, in an interpreter without the host packages: one paragraph, no traceback."""
from __future__ import annotations

import re
import subprocess
import sys

import pytest

from kit import KIT_ROOT


def test_host_dependencies_are_pyprojects():
    from kit.cli import HOST_DEPENDENCIES

    text = (KIT_ROOT / "pyproject.toml").read_text()
    block = re.search(r"^dependencies = \[(.*?)\]", text, re.S | re.M).group(1)
    assert tuple(re.findall(r'"([A-Za-z0-9_]+)', block)) == tuple(HOST_DEPENDENCIES.values())


@pytest.fixture
def without_matplotlib(tmp_path):
    """Test double for 'matplotlib is not installed': a package of that name, first on the path, whose import
    fails exactly as a missing one does."""
    fake = tmp_path / "fake_site" / "matplotlib"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n")
    return ["env", f"PYTHONPATH={fake.parent}", sys.executable]


@pytest.mark.parametrize("how", ["no site-packages", "no matplotlib"])
def test_report_without_the_host_packages_explains(how, tmp_path, request):
    python = [sys.executable, "-S"] if how == "no site-packages" else request.getfixturevalue("without_matplotlib")
    r = subprocess.run([*python, "-m", "kit", "report", "--results-dir", str(tmp_path / "results")],
                       cwd=KIT_ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert "needs the host-side packages" in r.stderr and "nox -s report" in r.stderr
    from kit.cli import HOST_DEPENDENCIES

    missing = re.search(r"has no '(\w+)'", r.stderr).group(1)  # the first one imported
    assert missing in HOST_DEPENDENCIES if how == "no site-packages" else missing == "matplotlib"
    assert not (tmp_path / "reports").exists()
