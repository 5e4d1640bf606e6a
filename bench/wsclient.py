"""A minimal WebSocket load generator on a raw socket with wsproto.

trio-websocket parses every frame through several tasks and became the
bottleneck when measuring pipelined commands. This client encodes every frame
before it starts the clock, sends them all from one thread and parses the
replies in another, so the server is what is measured.
"""

import json
import socket
import threading
import time

from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Message, Request, TextMessage

SUBPROTOCOL_PREFIX = "base64url.bearer.authorization.fernlabour.com."
# Bytes read from the socket at a time.
RECEIVE_SIZE = 1 << 20


def _update(labour_id: str, index: int) -> str:
    return json.dumps(
        {
            "correlation_id": str(index),
            "kind": "Command",
            "type": "LabourUpdate",
            "payload": {
                "type": "PostLabourUpdate",
                "payload": {
                    "labour_id": labour_id,
                    "labour_update_type": "STATUS_UPDATE",
                    "message": f"update {index}",
                },
            },
        }
    )


def pipelined_commands_per_second(
    host: str, port: int, labour_id: str, token: str, commands: int
) -> float:
    """Send `commands` PostLabourUpdate commands over one socket without
    waiting, and return commands per second until the last reply arrived."""
    connection = socket.create_connection((host, port))
    protocol = WSConnection(ConnectionType.CLIENT)
    handshake = Request(
        host=f"{host}:{port}",
        target=f"/api/v1/connect/{labour_id}",
        subprotocols=[SUBPROTOCOL_PREFIX + token],
    )
    connection.sendall(protocol.send(handshake))
    accepted = False
    while not accepted:
        protocol.receive_data(connection.recv(RECEIVE_SIZE))
        accepted = any(
            isinstance(event, AcceptConnection) for event in protocol.events()
        )

    frames = b"".join(
        protocol.send(Message(data=_update(labour_id, index)))
        for index in range(commands)
    )
    sender = threading.Thread(target=connection.sendall, args=(frames,))
    replies = 0
    started = time.perf_counter()
    sender.start()
    while replies < commands:
        protocol.receive_data(connection.recv(RECEIVE_SIZE))
        for event in protocol.events():
            # Replies start with their correlation id; pushes with their type.
            if isinstance(event, TextMessage) and event.data.startswith(
                '{"correlation_id"'
            ):
                replies += 1
    elapsed = time.perf_counter() - started
    sender.join()
    connection.close()
    return commands / elapsed
