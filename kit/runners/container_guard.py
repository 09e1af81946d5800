"""`python -m kit.runners.container_guard DOCKER NAME`: remove one container once the kit is done with it.

The Docker runner starts this in a session of its own (a Ctrl-C or a SIGKILL sent to the kit's process group
does not reach it) with a pipe as stdin that only the kit process holds. End of file on that pipe means the kit
closed it or died, however it died (SIGKILL, a timeout's kill); either way the container must not outlive it, so
`docker rm --force` (a no-op when `--rm` has already removed it). Host side, standard library only.

It ignores SIGINT and SIGTERM: in a Slurm job (`--runner slurm`) a cancel sends SIGTERM to every process of the
job, this one included, and the guard must outlive the kit process to remove the container after it (only
SIGKILL, at the end of the cluster's KillWait, can stop it).
"""
import signal
import subprocess
import sys


def main(argv: list[str]) -> int:
    docker, name = argv
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdin.buffer.read()  # blocks until the kit's end of the pipe is closed
    subprocess.run([docker, "rm", "--force", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
