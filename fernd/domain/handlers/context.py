"""The context a command handler needs besides the state and the command."""

from collections.abc import Callable
from datetime import datetime
from uuid import UUID

import msgspec

from fernd.domain.authorization import Caller


class CommandContext(msgspec.Struct, frozen=True, kw_only=True):
    """The request's `now`, its caller and the source of new ids.

    `new_id` returns a fresh UUID v7; tests pass a deterministic one.
    """

    now: datetime
    caller: Caller
    new_id: Callable[[], UUID]
