"""The HTTP benchmark's load generator when wrk is not installed: worker
processes, each driving its share of keep-alive connections from one
`selectors` loop on raw sockets.

The command mix is the one of bench/wrk_commands.lua: connection 0 starts
and ends a contraction on every even step and posts a status update on every
odd step, and every other connection posts status updates. Each connection
has one request in flight and sends the next when the reply has arrived.
"""

import json
import multiprocessing
import queue
import selectors
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as EventType
from urllib.parse import urlsplit

# Bytes read from a socket at a time.
RECEIVE_SIZE = 65536
# How long the parent waits for the workers to connect, in seconds.
START_TIMEOUT_SECONDS = 60.0
# The report a worker puts on the queue once its connections are open.
READY = "ready"
# Request and reply latencies kept per worker, enough for a p99.
MAX_LATENCY_SAMPLES = 100_000


@dataclass
class LoadResult:
    """Totals of one run over every worker."""

    requests: int = 0
    seconds: float = 0.0
    # Replies other than 2xx, and connections the server closed or reset.
    status_errors: int = 0
    socket_errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)


class _Connection:
    """One keep-alive connection and the commands it sends in turn."""

    def __init__(
        self, index: int, address: tuple[str, int], head: bytes, labour_id: str
    ) -> None:
        self.index = index
        self.address = address
        self.head = head
        self.labour_id = labour_id
        self.step = 0
        self.ending_contraction = False
        self.received = b""
        self.sent_at = 0.0
        self.socket = self._connect()

    def _connect(self) -> socket.socket:
        connection = socket.create_connection(self.address)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection

    def reconnect(self) -> None:
        self.socket.close()
        self.received = b""
        self.socket = self._connect()

    def _body(self) -> bytes:
        """Encode the command of the current step."""
        if self.index == 0 and self.step % 2 == 0:
            # Unique within the labour, because each run plans a new labour.
            contraction_id = f"00000000-0000-7000-8000-{self.step:012x}"
            group = "Contraction"
            if self.ending_contraction:
                name = "EndContraction"
                fields: dict[str, object] = {
                    "contraction_id": contraction_id,
                    "intensity": 5,
                }
            else:
                name = "StartContraction"
                fields = {"contraction_id": contraction_id}
        else:
            group, name = "LabourUpdate", "PostLabourUpdate"
            fields = {
                "labour_update_type": "STATUS_UPDATE",
                "message": f"update {self.index}-{self.step}",
            }
        payload = {"labour_id": self.labour_id, **fields}
        command = {"type": group, "payload": {"type": name, "payload": payload}}
        return json.dumps(command).encode()

    def advance(self) -> None:
        """Move to the next command, once the reply to the current one has
        arrived. A request lost with its connection is sent again."""
        if self.index == 0 and self.step % 2 == 0 and not self.ending_contraction:
            self.ending_contraction = True
        else:
            self.ending_contraction = False
            self.step += 1

    def send(self) -> None:
        """Send the current step's command."""
        body = self._body()
        message = self.head + f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        self.sent_at = time.perf_counter()
        self.socket.sendall(message)

    def read_reply(self) -> tuple[int, bool] | None:
        """Read what has arrived; return (status, keep alive) once a whole
        reply is in, None before. Raise ConnectionError when the server has
        closed the connection."""
        data = self.socket.recv(RECEIVE_SIZE)
        if not data:
            raise ConnectionError("server closed the connection")
        self.received += data
        end = self.received.find(b"\r\n\r\n")
        if end < 0:
            return None
        lines = self.received[:end].decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = dict(
            (name.strip().lower(), value.strip())
            for name, _, value in (line.partition(":") for line in lines[1:])
        )
        if "chunked" in headers.get("transfer-encoding", ""):
            raise ValueError("chunked replies are not supported by this generator")
        length = int(headers.get("content-length", "0"))
        if len(self.received) < end + 4 + length:
            return None
        self.received = self.received[end + 4 + length :]
        return status, headers.get("connection", "").lower() != "close"


def _worker(
    url: str,
    token: str,
    labour_id: str,
    indexes: list[int],
    seconds: float,
    start: EventType,
    reports: "multiprocessing.Queue[str]",
) -> None:
    """Connect, report ready on `reports`, wait for `start`, drive the
    connections for `seconds`, and put the counts on `reports` as JSON."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    head = (
        f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
    ).encode()
    connections = [_Connection(index, address, head, labour_id) for index in indexes]
    selector = selectors.DefaultSelector()
    for connection in connections:
        selector.register(connection.socket, selectors.EVENT_READ, connection)
    result = LoadResult()

    reports.put(READY)
    if not start.wait(START_TIMEOUT_SECONDS):
        return
    started = time.perf_counter()
    deadline = started + seconds
    for connection in connections:
        connection.send()
    while time.perf_counter() < deadline:
        for key, _ in selector.select(timeout=0.1):
            connection = key.data
            try:
                reply = connection.read_reply()
            except ConnectionError:
                result.socket_errors += 1
                selector.unregister(connection.socket)
                connection.reconnect()
                selector.register(connection.socket, selectors.EVENT_READ, connection)
                connection.send()
                continue
            if reply is None:
                continue
            status, keep_alive = reply
            result.requests += 1
            if not 200 <= status < 300:
                result.status_errors += 1
            if len(result.latencies_ms) < MAX_LATENCY_SAMPLES:
                elapsed = time.perf_counter() - connection.sent_at
                result.latencies_ms.append(elapsed * 1000)
            connection.advance()
            if not keep_alive:
                selector.unregister(connection.socket)
                connection.reconnect()
                selector.register(connection.socket, selectors.EVENT_READ, connection)
            connection.send()
    result.seconds = time.perf_counter() - started
    for connection in connections:
        connection.socket.close()
    reports.put(json.dumps(result.__dict__))


def _next_report(
    reports: "multiprocessing.Queue[str]",
    workers: list[BaseProcess],
    timeout: float,
) -> str:
    """Return the next report of a worker; raise RuntimeError when a worker
    exits without one or none arrives within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return reports.get(timeout=0.2)
        except queue.Empty:
            if any(worker.exitcode not in (None, 0) for worker in workers):
                raise RuntimeError("a load generator process failed") from None
    raise RuntimeError(f"no report from the load generator in {timeout} s")


def drive(
    url: str,
    token: str,
    labour_id: str,
    *,
    connections: int,
    processes: int,
    seconds: float,
) -> LoadResult:
    """Send the command mix to `url` over `connections` keep-alive
    connections spread over `processes` worker processes for `seconds`;
    return the totals. Raise RuntimeError when a worker fails."""
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    reports: multiprocessing.Queue[str] = context.Queue()
    workers: list[BaseProcess] = [
        context.Process(
            target=_worker,
            args=(
                url,
                token,
                labour_id,
                list(range(worker, connections, processes)),
                seconds,
                start,
                reports,
            ),
        )
        for worker in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        for _ in workers:
            _next_report(reports, workers, START_TIMEOUT_SECONDS)
        start.set()
        results = [
            json.loads(_next_report(reports, workers, seconds + START_TIMEOUT_SECONDS))
            for _ in workers
        ]
    finally:
        for worker in workers:
            worker.join(timeout=10)
            if worker.is_alive():
                worker.terminate()

    total = LoadResult(seconds=max(result["seconds"] for result in results))
    for result in results:
        total.requests += result["requests"]
        total.status_errors += result["status_errors"]
        total.socket_errors += result["socket_errors"]
        total.latencies_ms += result["latencies_ms"]
    return total
