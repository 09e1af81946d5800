"""One error type for everything a user can cause or meet.

Its message is one actionable paragraph; `python -m kit` prints it without a traceback.
"""


class KitError(Exception):
    """A failure with a one-paragraph, actionable message."""

    exit_code = 2
