"""`python -m kit.runners.container_guard DOCKER NAME`: remove one container once the kit is done with it.

The Docker runner starts it in a session of its own, with a pipe as stdin that only the kit process holds: end of
file means the kit closed it or died (however: SIGKILL, a timeout), so `docker rm --force` (a no-op after `--rm`).
It ignores SIGINT and SIGTERM: a Slurm cancel sends SIGTERM to every process of the job, and the guard must outlive
the kit process to remove the container after it.
"""
import signal
import subprocess
import sys


if __name__ == "__main__":
    docker, name = sys.argv[1:]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdin.buffer.read()  # blocks until the kit's end of the pipe is closed
    subprocess.run([docker, "rm", "--force", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
