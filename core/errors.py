"""One error type for everything a user can cause or meet, on either side: one actionable paragraph, printed by the
entry points without a traceback."""


class KitError(Exception):
    exit_code = 2


BenchError = KitError  # the container side's name for it: the same class, so either side catches the other's


# A tool's own error (docker's, sbatch's, nvidia-smi's) quoted inside a paragraph: usually a line or two, but a
# traceback or a usage text can run to pages and bury the paragraph's advice. 500 characters keep the usual messages
# whole (Slurm's longest refusals are about 300) and stay under ten terminal lines; the full text is in the log.
ONE_LINE_LIMIT = 500


def one_line(text: str) -> str:
    """`text` on one line (whitespace runs collapsed), cut at ONE_LINE_LIMIT with '...'; '(no message)' when empty."""
    text = " ".join((text or "").split()) or "(no message)"
    return text if len(text) <= ONE_LINE_LIMIT else text[: ONE_LINE_LIMIT - 3] + "..."
