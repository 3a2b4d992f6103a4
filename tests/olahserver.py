"""Start a real hub-compatible server (olah) on loopback, serving local git repos, for download tests."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class OlahServer:
    """olah with [accessibility] offline = true and a mirrors-path; nothing leaves the machine."""

    def __init__(self, root: Path, port: int | None = None) -> None:
        self.root = root
        self.port = port or free_port()
        self.mirrors = root / "mirrors"
        self.proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def config(self) -> Path:
        for sub in ("mirrors", "repos", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        path = self.root / "olah.toml"
        path.write_text(f"""[basic]
host = "127.0.0.1"
port = {self.port}
repos-path = "{self.root / 'repos'}"
mirrors-path = ["{self.mirrors}"]
hf-scheme = "http"
hf-netloc = "127.0.0.1:9"
hf-lfs-netloc = "127.0.0.1:9"
mirror-scheme = "http"
mirror-netloc = "127.0.0.1:{self.port}"
mirror-lfs-netloc = "127.0.0.1:{self.port}"

[accessibility]
offline = true
""")
        return path

    def start(self, probe_repo: str) -> "OlahServer":
        """Start and wait until it answers for probe_repo (a repo already under mirrors/)."""
        config = self.config()
        log = open(self.root / "logs" / "server.out", "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "olah.server", "--config", str(config), "--log-path",
             str(self.root / "logs")], stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
            env={k: v for k, v in os.environ.items() if not k.startswith("HF_")})
        deadline = time.monotonic() + 30
        url = f"{self.endpoint}/api/models/{probe_repo}/revision/main"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"olah exited: {(self.root / 'logs' / 'server.out').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("olah did not answer within 30 s")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None
