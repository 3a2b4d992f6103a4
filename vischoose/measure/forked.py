"""Children that import torch, forked from a server process that imported torch once.

Every measurement still runs in a process of its own (its memory, its crash, its kill), but importing torch and
torchvision takes 3-5 s per process on a 2-core machine, paid again by each child. On Linux, the children that
import torch and read no resident memory (measure.child.forkable: torch eager timings, the build of an exported
graph) are forked from a server started once
per vischoose process (``python -m vischoose.measure.forked FD``) that has imported torch and torchvision and run
no torch operation: no thread pool or device state is inherited (the child's torch.set_num_threads sizes its pool,
CUDA starts in the child). The child gets the job's environment, working folder and CPU affinity, and its stdout
and stderr are one pipe the parent reads, as for a child started fresh; its exit status is the same (-N: signal N).

The protocol, over a Unix seqpacket socket: the parent sends the job (JSON) with the pipe's write end (SCM_RIGHTS);
the server forks, answers {"pid"}, reaps the child and answers {"status"}. The server ignores Ctrl-C (the parent
decides) and exits when the parent's end of the socket closes. If it cannot start or dies, children start fresh
(measure.runner.run_child).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from typing import Any, Callable

PRELOAD = ("torch", "torchvision")  # what every torch child imports first (timm imports torchvision)
MESSAGE_BYTES = 1 << 20

_lock = threading.Lock()
_server: "_Server | None" = None


class ServerGone(Exception):
    """The fork server is not there (it could not start, or it died): start the child fresh."""


def available() -> bool:
    """Whether children can be forked from a server here (Linux)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds")


class _Server:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.proc = subprocess.Popen([sys.executable, "-m", __name__, str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sock = ours

    def ask(self, request: dict[str, Any], fd: int) -> int:
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], [fd])
        except OSError as err:
            raise ServerGone(str(err)) from err
        return int(self.answer()["pid"])

    def answer(self) -> dict[str, Any]:
        try:
            message = self.sock.recv(MESSAGE_BYTES)
        except OSError as err:
            raise ServerGone(str(err)) from err
        if not message:
            raise ServerGone("the fork server exited")
        return json.loads(message)

    def close(self) -> None:
        self.sock.close()  # the server exits at end of file
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _the_server() -> _Server:
    global _server
    if _server is None or _server.proc.poll() is not None:
        _server = _Server()
        atexit.register(_server.close)
    return _server


def run(job_path: str, env: dict[str, str], on_line: Callable[[str], None]) -> int:
    """Run measure.child on a job in a child forked from the server, passing each line of its output on; its exit
    status (-N: killed by signal N).

    Raises:
        ServerGone: the server is not there; nothing was run.
    """
    global _server
    with _lock:  # one child at a time per server
        server = _the_server()
        read_fd, write_fd = os.pipe()
        try:
            request = {"job": job_path, "env": env, "cwd": os.getcwd(), "cpus": sorted(os.sched_getaffinity(0))}
            pid = server.ask(request, write_fd)
        except ServerGone:
            os.close(read_fd)
            _server = None
            raise
        finally:
            os.close(write_fd)  # the child holds the only write end now: end of file when it exits
        status = None
        try:
            with os.fdopen(read_fd, "r", errors="replace") as out:
                for line in out:
                    on_line(line.rstrip("\n"))
            status = int(server.answer()["status"])
            return status
        finally:
            if status is None:  # interrupted: do not leave the child running, and keep the server in step
                _kill(pid)
                try:
                    server.answer()
                except ServerGone:
                    _server = None


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- the server ---------------------------------------------------------------------------------------------

def serve(fd: int) -> None:
    """Import torch, then fork one child per request until the parent closes the socket."""
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    sock = socket.socket(fileno=fd)
    while True:
        message, fds, _, _ = socket.recv_fds(sock, MESSAGE_BYTES, 1)
        if not message:
            return
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            sock.close()
            _child(request, fds[0])
        os.close(fds[0])
        sock.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        sock.send(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode())


def _child(request: dict[str, Any], fd: int) -> None:
    """In the forked child: the job's environment, folder and cores, output into the pipe, then the child's main."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.sched_setaffinity(0, request["cpus"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        from vischoose.measure import child

        code = child.main([request["job"]])
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    except BaseException:  # noqa: BLE001 - whatever it is, the parent reads it as this child's output
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
