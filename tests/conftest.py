"""Fixtures shared by every test: a real `fernd serve` process on loopback."""

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from fernd.auth.tokens import LocalTokenIssuer

# How long a starting server may take to report its address, in seconds.
STARTUP_TIMEOUT_SECONDS = 20.0
_SERVING = re.compile(r"fernd serving on (http://\S+)")


class FerndServer:
    """A `fernd serve` subprocess bound to 127.0.0.1 on a free port."""

    def __init__(self, data_dir: Path, env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.env = {**os.environ, **(env or {})}
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.base_url = ""
        self._issuer: LocalTokenIssuer | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        offset = self.log_path.stat().st_size
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
            env=self.env,
        )
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:].decode(errors="replace")
            match = _SERVING.search(text)
            if match:
                self.base_url = match.group(1)
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"fernd exited during startup:\n{text}")
            time.sleep(0.05)
        raise RuntimeError(f"fernd did not start within {STARTUP_TIMEOUT_SECONDS} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        """Send `sig` and wait for the process to exit; return its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def token(self, user_id: str, name: str | None = None, **claims: Any) -> str:
        if self._issuer is None:
            self._issuer = LocalTokenIssuer(self.data_dir)
        return self._issuer.issue(
            user_id, name=name, ttl_seconds=claims.pop("ttl_seconds", 3600), **claims
        )

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(
            base_url=self.base_url, headers=headers, timeout=30, **kwargs
        )


def _start_server(tmp_path: Path, env: dict[str, str] | None) -> FerndServer:
    server = FerndServer(tmp_path / "data", env)
    server.start()
    return server


@pytest.fixture(scope="module")
def fernd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FerndServer]:
    """One server per test module; tests use their own users and labours."""
    server = _start_server(tmp_path_factory.mktemp("fernd"), None)
    yield server
    server.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[FerndServer]:
    """A server of its own, for tests that stop, kill or reconfigure it."""
    server = FerndServer(tmp_path / "data")
    yield server
    if server.process is not None and server.process.poll() is None:
        server.stop()
