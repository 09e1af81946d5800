"""Signal dispositions the Ctrl-C tests need, whatever the test run inherited.

A process started with SIGINT ignored (nohup, a background job in a non-interactive shell) passes that on: Python
then installs no KeyboardInterrupt handler, in pytest itself and in every child it starts. A Ctrl-C test sets what
it needs instead of inheriting it."""
from __future__ import annotations

import contextlib
import signal
from typing import Iterator


@contextlib.contextmanager
def sigint_raises_keyboard_interrupt() -> Iterator[None]:
    """In this process, for the duration: SIGINT raises KeyboardInterrupt (Python's default), then the inherited
    disposition is put back."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def default_sigint() -> None:
    """preexec_fn for a child that must react to SIGINT as if started from a terminal (Python then installs its
    KeyboardInterrupt handler); an inherited SIG_IGN would survive exec."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def ignored_sigint() -> None:
    """preexec_fn that starts a child the way nohup or a background job does: SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
