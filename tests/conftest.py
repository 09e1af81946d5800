"""Loaded before every suite's own conftest: makes tests/ci_policy.py importable as `ci_policy`."""
import sys
from pathlib import Path

_TESTS = str(Path(__file__).resolve().parent)
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
