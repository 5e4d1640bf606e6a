"""The snapshot entries a labour changed since its stored snapshot.

A snapshot stores each contraction and labour update as a row of its own, so
writing the next snapshot costs the entries that changed rather than the whole
state, which grows with every labour update.
"""

from uuid import UUID

from fernd.domain import events as ev
from fernd.domain.labour import Labour, snapshot_entries, snapshot_entry_of


class SnapshotChanges:
    """The entries that the next snapshot writes, collected event by event.

    Call `note` with each event before `evolve` applies it. `changed` is None
    when the next snapshot must write every entry: after activation from a
    snapshot that keeps its entries in its head, and after `rewrite_all`.
    """

    def __init__(self, entries_in_rows: bool = True) -> None:
        self.changed: dict[tuple[str, UUID], int] | None = (
            {} if entries_in_rows else None
        )

    def note(self, state: Labour | None, event: ev.Event, sequence: int) -> None:
        """Record the entry that `event` touches. `state` is the state before
        the event."""
        if self.changed is None or state is None:
            return
        key = snapshot_entry_of(event)
        if key is None:
            return
        kind, entry_id = key
        if entry_id not in snapshot_entries(state, kind):
            # A dict puts a new key last, so the row takes a position after
            # every entry already stored.
            self.changed[key] = sequence
        else:
            self.changed.setdefault(key, 0)

    def stored(self) -> None:
        """Start a new collection after a snapshot was committed."""
        self.changed = {}

    def rewrite_all(self) -> None:
        """Make the next snapshot write every entry."""
        self.changed = None
