"""Writing a file so that no reader ever sees half of it: a temp file in the same folder, fsync, rename."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Optional


@contextmanager
def atomic_path(path: Path, mode: Optional[int] = None) -> Iterator[Path]:
    """Yield a temp file beside `path` to write (by name: writers such as torch's trace exporter open it themselves).

    On a clean exit the temp file is fsynced, given `mode` (default: per umask) and renamed onto `path`; on an error
    it is removed and `path` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        if mode is None:  # the mode a new file gets (0644 usually); mkstemp's own 0600 would hide it from others
            mask = os.umask(0)
            os.umask(mask)
            mode = 0o666 & ~mask
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, mode: Optional[int] = None) -> None:
    with atomic_path(path, mode) as tmp:
        tmp.write_bytes(text.encode("utf-8"))
