"""One error type for everything a user can cause or meet, on either side.

Its message is one actionable paragraph: what went wrong, and what to do about it. `python -m kit`,
`python -m bench` and profile/run_profile.py print it without a traceback and exit with its code.
"""


class KitError(Exception):
    """A failure with a one-paragraph, actionable message."""

    exit_code = 2


BenchError = KitError  # the container side's name for it: the same class, so either side catches the other's
