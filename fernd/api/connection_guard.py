"""Keep one client connection's protocol fault from stopping the server.

Hypercorn 0.18 on Trio runs every connection in one handler nursery, so an
exception that escapes a connection ends `serve` and with it fernd. One such
exception is public: a WebSocket upgrade request followed by any byte in the
same packet makes h11 raise LocalProtocolError while the reply is sent
(pgjones/hypercorn#225, open). `install()` replaces the connection class
that hypercorn's Trio worker starts with one that logs such an exception
and closes only that connection.
"""

import logging

import hypercorn.trio.run
from hypercorn.trio.tcp_server import TCPServer

logger = logging.getLogger(__name__)


class GuardedTCPServer(TCPServer):
    """Hypercorn's Trio connection, with its unexpected exceptions contained."""

    async def run(self) -> None:
        try:
            await super().run()
        except* Exception as group:
            # Cancellation is a BaseException, so it passes through. Only the
            # exception types are logged, because a protocol error's message
            # can quote the client's request, headers and tokens included.
            logger.warning(
                "Closed a client connection after a protocol error: %s",
                ", ".join(type(error).__name__ for error in group.exceptions),
            )


def install() -> None:
    """Make hypercorn's Trio worker start GuardedTCPServer for each connection."""
    hypercorn.trio.run.TCPServer = GuardedTCPServer  # type: ignore[misc]
