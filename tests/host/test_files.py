"""core.files: the one atomic write (results, reports, Slurm scripts, traces); core.errors.one_line."""
from __future__ import annotations

import os

import pytest

from core.errors import ONE_LINE_LIMIT, one_line
from core.files import atomic_path, atomic_write_text


def test_a_write_replaces_the_file_with_the_mode_umask_gives(tmp_path):
    target = tmp_path / "new" / "r.json"
    old = os.umask(0o027)
    try:
        atomic_write_text(target, "one")
        atomic_write_text(target, "two")
    finally:
        os.umask(old)
    assert target.read_text() == "two" and (target.stat().st_mode & 0o777) == 0o640
    atomic_write_text(target, "#!/bin/sh\n", mode=0o755)
    assert (target.stat().st_mode & 0o777) == 0o755
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.json"]


def test_an_error_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "trace.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.parent == tmp_path
            tmp.write_text("half")
            raise RuntimeError("the writer failed")
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["trace.json"]


def test_one_line():
    assert one_line("  error:\n\n  no  such\tthing \n") == "error: no such thing"
    assert one_line("") == one_line(None) == "(no message)"
    cut = one_line("x" * 2000)
    assert len(cut) == ONE_LINE_LIMIT and cut.endswith("...")
