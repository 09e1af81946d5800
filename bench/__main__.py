"""`python -m bench COMMAND`: the container side's entry point.

    run    --backend transformers|vllm [workload options]   measure TTFT/TPOT, write one result JSON
    synth  --config NAME|PATH --out DIR                      write a synthetic AWQ checkpoint

Errors a user can cause or meet are printed as one paragraph, without a traceback (exit 2; exit 1 for a result
that contradicts itself, which is then not written); Ctrl-C exits 130 and writes nothing partial.
"""
from __future__ import annotations

import sys
from typing import Callable

from core.errors import BenchError
from core.results import ResultFileError

USAGE = "usage: python -m bench {run,synth} [options]  (python -m bench run --help lists the workload options)"


def report_errors(command: Callable[[list[str]], int], argv: list[str], interrupted: str) -> int:
    """command(argv) with the errors above as one paragraph, and Ctrl-C as `interrupted` (also the profiler's)."""
    try:
        return command(argv)
    except (BenchError, ResultFileError) as e:  # ResultFileError: the result contradicted itself, nothing written
        print(f"\nerror: {e}", file=sys.stderr)
        return getattr(e, "exit_code", 1)
    except KeyboardInterrupt:
        print(f"\n{interrupted}", file=sys.stderr)
        return 130


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("run", "synth"):
        print(USAGE, file=sys.stderr)
        return 2
    if argv[0] == "run":
        from bench.run import run as command
    else:
        from bench.synthetic import synth_main as command
    return report_errors(command, argv[1:], "interrupted; nothing partial was written.")


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
