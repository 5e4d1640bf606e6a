"""Counters for operators: labours, sockets, activations and hibernations."""

import logging

import msgspec
import trio

from fernd.runtime.registry import LabourRegistry
from fernd.runtime.sockets import SocketHub
from fernd.storage.shared_db import SharedDatabase

logger = logging.getLogger(__name__)

# The metrics line is logged at most this often, and only when a value changed.
LOG_INTERVAL_SECONDS = 60.0


class MetricsSnapshot(msgspec.Struct, frozen=True):
    active_labours: int
    hibernated_labours: int
    open_sockets: int
    sockets_opened: int
    activations: int
    hibernations: int
    dropped_slow_sockets: int


class Metrics:
    def __init__(
        self, registry: LabourRegistry, hub: SocketHub, shared: SharedDatabase
    ) -> None:
        self.registry = registry
        self.hub = hub
        self.shared = shared

    def snapshot(self) -> MetricsSnapshot:
        active = self.registry.active_count
        return MetricsSnapshot(
            active_labours=active,
            hibernated_labours=max(0, self.shared.labour_count() - active),
            open_sockets=self.hub.open_count,
            sockets_opened=self.hub.opened,
            activations=self.registry.activations,
            hibernations=self.registry.hibernations,
            dropped_slow_sockets=self.hub.dropped_slow,
        )


async def log_metrics(metrics: Metrics, interval: float = LOG_INTERVAL_SECONDS) -> None:
    """Log the metrics every `interval` seconds when any value changed."""
    last: MetricsSnapshot | None = None
    while True:
        await trio.sleep(interval)
        current = metrics.snapshot()
        if current != last:
            logger.info(
                "labours active=%d hibernated=%d, sockets open=%d opened=%d"
                " dropped_slow=%d, activations=%d hibernations=%d",
                current.active_labours,
                current.hibernated_labours,
                current.open_sockets,
                current.sockets_opened,
                current.dropped_slow_sockets,
                current.activations,
                current.hibernations,
            )
            last = current
