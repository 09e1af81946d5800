"""BenchError: everything a user can cause or meet on the container side.

Its message is one actionable paragraph: what went wrong, and what to do about it.
Entry points (`python -m bench ...`, profile/run_profile.py) print it without a
traceback and exit with code 2. It subclasses the host's KitError, so the host CLI
(which calls bench.options.validate_passthrough before anything long starts) prints
it the same way. Torch-free.
"""
from __future__ import annotations

from kit.errors import KitError


class BenchError(KitError):
    """A failure with a one-paragraph, actionable message (exit code 2)."""

    exit_code = 2
