"""Children that import torch, forked from a server process that imported torch once.

Every measurement still runs in a process of its own (its memory, its crash, its kill), but importing torch and
torchvision takes 3-5 s per process on a 2-core machine, paid again by each child. On Linux, the children that
import torch anyway (measure.child.forkable: every torch eager mode, the build of an exported graph) are forked
from a server started once per vischoose process (``python -m vischoose.measure.forked FD``) that has imported torch
and torchvision and run no torch operation: no thread pool or device state is inherited (the child's torch.set_num_threads sizes its pool,
CUDA starts in the child). The child first touches the library pages the server had resident (resident_file_pages),
so its RSS, and every peak measured over it, is that of a fresh process after the same imports. It gets the job's
environment, working folder and CPU affinity, and its stdout and stderr are one pipe the parent reads, as for a
child started fresh; its exit status is the same (-N: signal N).

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
import struct
import subprocess
import sys
import threading
from typing import Any, Callable

PRELOAD = ("torch", "torchvision")  # what every torch child imports first (timm imports torchvision)
MESSAGE_BYTES = 1 << 20
SERVER_MODULE = __name__  # run as python -m SERVER_MODULE FD

_lock = threading.Lock()
_server: "_Server | None" = None
_unusable = False  # a server died before it forked anything (no pagemap, torch fails to import): never again


class ServerGone(Exception):
    """The fork server is not there (it could not start, or it died): start the child fresh."""


def available() -> bool:
    """Whether children can be forked from a server here (Linux, and no server has failed to start)."""
    return sys.platform.startswith("linux") and hasattr(socket, "send_fds") and not _unusable


class _Server:
    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        with theirs:
            self.proc = subprocess.Popen([sys.executable, "-m", SERVER_MODULE, str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sock = ours
        self.forked = 0  # children it has forked

    def ask(self, request: dict[str, Any], fd: int) -> int:
        try:
            socket.send_fds(self.sock, [json.dumps(request).encode()], [fd])
        except OSError as err:
            raise ServerGone(str(err)) from err
        pid = int(self.answer()["pid"])
        self.forked += 1
        return pid

    def answer(self) -> dict[str, Any]:
        try:
            message = self.sock.recv(MESSAGE_BYTES)
        except OSError as err:
            raise ServerGone(str(err)) from err
        if not message:
            raise ServerGone("the fork server exited")
        return json.loads(message)

    def answered(self) -> bool:
        """Whether an answer is waiting to be read."""
        try:
            return bool(self.sock.recv(MESSAGE_BYTES, socket.MSG_PEEK | socket.MSG_DONTWAIT))
        except BlockingIOError:
            return False
        except OSError:
            return True  # gone: nothing to kill through it, answer() says so

    def close(self) -> None:
        self.sock.close()  # the server exits at end of file
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _the_server() -> _Server:
    global _server
    if _server is not None and _server.proc.poll() is not None:
        _forget(_server)
    if _unusable:
        raise ServerGone("no fork server can run here")
    if _server is None:
        _server = _Server()
        atexit.register(_server.close)
    return _server


def run(job_path: str, env: dict[str, str], on_line: Callable[[str], None]) -> int:
    """Run measure.child on a job in a child forked from the server, passing each line of its output on; its exit
    status (-N: killed by signal N).

    Raises:
        ServerGone: the server is not there; nothing was run.
    """
    with _lock:  # one child at a time per server
        server = _the_server()
        read_fd, write_fd = os.pipe()
        try:
            request = {"job": job_path, "env": env, "cwd": os.getcwd(), "cpus": sorted(os.sched_getaffinity(0))}
            pid = server.ask(request, write_fd)
        except ServerGone:
            os.close(read_fd)
            _forget(server)
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
                if not server.answered():  # once the status is sent, the pid is reaped and may be another's
                    _kill(pid)
                try:
                    server.answer()
                except ServerGone:
                    _forget(server)


def _forget(server: _Server) -> None:
    """A server that is gone: the next child starts another, unless this one never forked (it cannot work here)."""
    global _server, _unusable
    _server = None
    _unusable = _unusable or server.forked == 0


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


# --- the server ---------------------------------------------------------------------------------------------

def serve(fd: int) -> None:
    """Import torch, then fork one child per request until the parent closes the socket. Without a readable
    /proc/self/pagemap it exits at once, and every child starts fresh."""
    import importlib

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass
    sock = socket.socket(fileno=fd)
    try:
        pages = resident_file_pages()
    except (OSError, ValueError):
        return
    while True:
        message, fds, _, _ = socket.recv_fds(sock, MESSAGE_BYTES, 1)
        if not message:
            return
        request = json.loads(message)
        pid = os.fork()
        if pid == 0:
            sock.close()
            _child(request, fds[0], pages)
        os.close(fds[0])
        sock.send(json.dumps({"pid": pid}).encode())
        _, status = os.waitpid(pid, 0)
        sock.send(json.dumps({"status": os.waitstatus_to_exitcode(status)}).encode())


def resident_file_pages() -> list[int]:
    """The addresses of the pages of readable file mappings (libraries, mapped files) resident in this process.

    fork copies the page table of anonymous memory only: a forked child starts without the library pages its
    parent had faulted in (about 300 MiB after importing torch here), so its RSS would read low, and a peak over
    it high by what the child faults in again. Touching these pages in the child gives it the RSS a fresh process
    has after the same imports (measured: 377 -> 677 MiB, the server's 674, in 0.16 s).
    """
    pages, size = [], os.sysconf("SC_PAGE_SIZE")
    with open("/proc/self/maps") as maps, open("/proc/self/pagemap", "rb") as pagemap:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) < 6 or not fields[5].startswith("/") or fields[5].startswith("/dev/") or \
                    not fields[1].startswith("r"):
                continue
            low, high = (int(x, 16) for x in fields[0].split("-"))
            pagemap.seek(low // size * 8)
            entries = pagemap.read((high - low) // size * 8)
            pages += [low + i * size for i, (entry,) in enumerate(struct.iter_unpack("<Q", entries))
                      if entry >> 63]  # bit 63: present in RAM
    return pages


def _touch(pages: list[int]) -> None:
    import ctypes

    for address in pages:
        ctypes.string_at(address, 1)


def _child(request: dict[str, Any], fd: int, pages: list[int]) -> None:
    """In the forked child: the server's resident library pages, the job's environment, folder and cores, output
    into the pipe, then the child's main."""
    code = 1
    try:
        _touch(pages)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        os.sched_setaffinity(0, request["cpus"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
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
