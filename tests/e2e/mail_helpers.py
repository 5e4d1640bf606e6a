"""Local receivers for fernd's notifications, and a server started with a
config file.

`MailSink` is an aiosmtpd SMTP server and `JsonSink` a plain HTTP server that
stores the JSON bodies Apprise's `json://` URLs post, both on 127.0.0.1.
`ConfiguredServer` starts `fernd serve --config PATH` the way `FerndServer`
starts `fernd serve`, and `write_config` writes the fernd.toml it reads.
Everything here runs in threads, so the synchronous tests can poll it.
"""

import email
import email.policy
import json
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import apsw
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from tests.conftest import _SERVING, STARTUP_TIMEOUT_SECONDS, FerndServer

LOOPBACK = "127.0.0.1"
# The reply that makes an SMTP client treat a message as not delivered and
# retry later (RFC 5321 4.2.1: 4yz is a transient failure).
TRANSIENT_FAILURE_REPLY = "451 4.3.0 Temporary failure, try again later"
ACCEPTED_REPLY = "250 Message accepted for delivery"
# Pause between two polls of a receiver or a database, in seconds.
POLL_INTERVAL_SECONDS = 0.05


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now.

    NOTE: another process may take the port before the caller binds it; on a
    test machine that race is rare.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class ReceivedMail:
    """One message as the SMTP server received it."""

    envelope_recipients: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def entity_ref_id(self) -> str | None:
        value = self.message["X-Entity-Ref-ID"]
        return None if value is None else str(value)

    def part(self, subtype: str) -> str | None:
        """Return the decoded `text/<subtype>` part, or None when absent."""
        body = self.message.get_body(preferencelist=(subtype,))
        if body is None or body.get_content_subtype() != subtype:
            return None
        content: str = body.get_content()  # type: ignore[attr-defined]
        return content


class _MailHandler:
    # aiosmtpd calls handle_DATA on its own event loop thread.
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.accepted: list[ReceivedMail] = []
        self.rejected: list[ReceivedMail] = []
        self.rejections_left = 0

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        received = ReceivedMail(tuple(envelope.rcpt_tos), message)
        with self.lock:
            if self.rejections_left > 0:
                self.rejections_left -= 1
                self.rejected.append(received)
                return TRANSIENT_FAILURE_REPLY
            self.accepted.append(received)
        return ACCEPTED_REPLY


class MailSink:
    """An SMTP server on 127.0.0.1 that stores every message it accepts.

    `port` 0 picks a free port. The server listens only between `start` and
    `stop`, so a test can point fernd at it while it is down.
    """

    def __init__(self, port: int = 0) -> None:
        self.port = port or free_port()
        self._handler = _MailHandler()
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(self._handler, hostname=LOOPBACK, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def reject_next(self, count: int) -> None:
        """Reply to the next `count` messages with a transient failure (451)."""
        with self._handler.lock:
            self._handler.rejections_left = count

    @property
    def messages(self) -> list[ReceivedMail]:
        """The accepted messages, oldest first."""
        with self._handler.lock:
            return list(self._handler.accepted)

    @property
    def rejected(self) -> list[ReceivedMail]:
        """The messages that got a transient failure, oldest first."""
        with self._handler.lock:
            return list(self._handler.rejected)

    def wait_for(self, count: int, timeout: float) -> list[ReceivedMail]:
        """Wait until at least `count` messages were accepted or `timeout`
        seconds pass; return the accepted messages either way."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_SECONDS)
        return self.messages


@dataclass(frozen=True)
class ReceivedPost:
    """One JSON body posted to the HTTP receiver, with its request path."""

    path: str
    body: dict[str, Any]


class JsonSink:
    """An HTTP server on 127.0.0.1 that replies to every POST with 200 and stores
    its JSON body. Apprise's `json://` URLs post `version`, `title`,
    `message`, `type` and any `:name=value` extras of the URL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._posts: list[ReceivedPost] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                with sink._lock:
                    sink._posts.append(ReceivedPost(self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                # The default handler writes every request to stderr.
                pass

        self._server = ThreadingHTTPServer((LOOPBACK, 0), Handler)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        """Return the `json://` Apprise URL that posts to `path` here."""
        return f"json://{LOOPBACK}:{self.port}{path}"

    def posts(self, path: str | None = None) -> list[ReceivedPost]:
        """Return the stored posts, oldest first, only those whose path
        (query string excluded) is `path` when given."""
        with self._lock:
            posts = list(self._posts)
        if path is None:
            return posts
        return [post for post in posts if post.path.split("?")[0] == path]

    def wait_for(self, path: str, count: int, timeout: float) -> list[ReceivedPost]:
        """Wait until at least `count` posts reached `path` or `timeout`
        seconds pass; return the posts to `path` either way."""
        deadline = time.monotonic() + timeout
        while len(self.posts(path)) < count and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL_SECONDS)
        return self.posts(path)


def _toml_string(value: str) -> str:
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(value)


def write_config(
    path: Path,
    *,
    public_url: str,
    admin_user_ids: list[str],
    smtp_port: int | None = None,
    sms_url: str | None = None,
    operator_urls: list[str] | None = None,
) -> Path:
    """Write a fernd.toml at `path` and return `path`.

    An SMTP port adds `[notifications.email]` for a relay on 127.0.0.1 without
    TLS; `sms_url` adds `[notifications.sms]`. With neither and no operator
    URLs the file has no `[notifications]` table at all.
    """
    lines = [
        f"public_url = {_toml_string(public_url)}",
        "admin_user_ids = [" + ", ".join(map(_toml_string, admin_user_ids)) + "]",
    ]
    if operator_urls:
        lines += [
            "[notifications]",
            "operator_urls = [" + ", ".join(map(_toml_string, operator_urls)) + "]",
        ]
    if smtp_port is not None:
        lines += [
            "[notifications.email]",
            f'host = "{LOOPBACK}"',
            f"port = {smtp_port}",
            'tls = "none"',
            'from_address = "fernd@example.org"',
        ]
    if sms_url is not None:
        lines += ["[notifications.sms]", f"url = {_toml_string(sms_url)}"]
    path.write_text("\n".join(lines) + "\n")
    return path


class ConfiguredServer(FerndServer):
    """A `fernd serve --config PATH` subprocess on 127.0.0.1 and a free port."""

    def __init__(
        self, data_dir: Path, config_path: Path, env: dict[str, str] | None = None
    ) -> None:
        # requests, which Apprise's HTTP plugins use, would send loopback
        # requests through a proxy named in the environment.
        super().__init__(data_dir, {"NO_PROXY": LOOPBACK, **(env or {})})
        self.config_path = config_path

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "fernd",
                    "serve",
                    "--config",
                    str(self.config_path),
                    "--bind",
                    f"{LOOPBACK}:0",
                    "--data-dir",
                    str(self.data_dir),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.env,
            )
        deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            text = self.log_path.read_bytes()[offset:].decode(errors="replace")
            match = _SERVING.search(text)
            if match:
                self.base_url = match.group(1)
                return
            if self.process.poll() is not None:
                raise RuntimeError(f"fernd exited during startup:\n{text}")
            time.sleep(POLL_INTERVAL_SECONDS)
        raise RuntimeError(f"fernd did not start within {STARTUP_TIMEOUT_SECONDS} s")

    def labour_database(self, labour_id: str) -> Path:
        """Return the path of the labour's own database file."""
        return self.data_dir / "labours" / labour_id[:2] / f"{labour_id}.db"

    def effects(self, labour_id: str) -> list[dict[str, Any]]:
        """Return the labour's `pending_effects` rows in creation order, read
        through a read-only connection while the server runs."""
        connection = apsw.Connection(
            str(self.labour_database(labour_id)), flags=apsw.SQLITE_OPEN_READONLY
        )
        try:
            cursor = connection.execute(
                "SELECT effect_id, event_sequence, effect_type, effect_payload,"
                " idempotency_key, status, attempts, last_attempt_at,"
                " next_attempt_at, last_error, created_at FROM pending_effects"
                " ORDER BY created_at, effect_id"
            )
            names = [column[0] for column in cursor.getdescription()]
            return [dict(zip(names, row, strict=True)) for row in cursor]
        finally:
            connection.close()
