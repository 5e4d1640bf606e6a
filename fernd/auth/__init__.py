"""Authentication: this installation's signing key, token issuing and token
verification, and the mapping from verified tokens to users."""
