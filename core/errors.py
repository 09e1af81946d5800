"""One error type for everything a user can cause or meet, on either side: its message is one actionable paragraph
(what went wrong, what to do about it); `python -m kit`, `python -m bench` and profile/run_profile.py print it
without a traceback and exit with its code.
"""


class KitError(Exception):
    exit_code = 2


BenchError = KitError  # the container side's name for it: the same class, so either side catches the other's


# A tool's own error (docker's, sbatch's, nvidia-smi's) quoted inside a paragraph: usually a line or two, but a
# traceback or a usage text can run to pages and bury the paragraph's advice. 500 characters keep the usual messages
# whole (Slurm's longest refusals are about 300) and stay under ten terminal lines; the full text is in the log.
ONE_LINE_LIMIT = 500


def one_line(text: str, limit: int = ONE_LINE_LIMIT) -> str:
    """`text` on one line (whitespace runs collapsed), cut at `limit` with '...'; '(no message)' when empty."""
    text = " ".join((text or "").split())
    if not text:
        return "(no message)"
    return text if len(text) <= limit else text[: limit - 3] + "..."
