"""Start a real `fernd serve` subprocess on a free loopback port."""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

from fernd.auth.tokens import LocalTokenIssuer

_SERVING = re.compile(r"fernd serving on (http://\S+)")


class BenchServer:
    """A fernd server with its own temporary data directory."""

    def __init__(self, **settings: str) -> None:
        self._directory = tempfile.TemporaryDirectory()
        self.data_dir = Path(self._directory.name) / "data"
        self.env = {
            **os.environ,
            **{f"FERND_{k.upper()}": v for k, v in settings.items()},
        }
        self.env.setdefault("FERND_LOG_LEVEL", "WARNING")
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self.log_path = Path(self._directory.name) / "fernd.log"

    def __enter__(self) -> "BenchServer":
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "fernd",
                "serve",
                "--bind",
                "127.0.0.1:0",
                "--data-dir",
                str(self.data_dir),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**self.env, "FERND_LOG_LEVEL": "INFO"},
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            match = _SERVING.search(self.log_path.read_text(errors="replace"))
            if match:
                self.base_url = match.group(1)
                return self
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"fernd did not start:\n{self.log_path.read_text()}")

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)
        self._directory.cleanup()

    def token(self, user_id: str, name: str = "Bench User") -> str:
        return LocalTokenIssuer(self.data_dir).issue(
            user_id, name=name, ttl_seconds=7200
        )

    def rss_kib(self) -> int:
        """Return the server's resident memory in KiB, from /proc."""
        assert self.process is not None
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return 0
