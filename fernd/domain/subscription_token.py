"""The share token a subscriber presents to request access."""

import secrets

from fernd.domain.constants import (
    SUBSCRIPTION_TOKEN_ALPHABET,
    SUBSCRIPTION_TOKEN_LENGTH,
)


def new_subscription_token() -> str:
    """Return 8 symbols drawn uniformly from the token alphabet with a
    cryptographically secure source."""
    return "".join(
        secrets.choice(SUBSCRIPTION_TOKEN_ALPHABET)
        for _ in range(SUBSCRIPTION_TOKEN_LENGTH)
    )
