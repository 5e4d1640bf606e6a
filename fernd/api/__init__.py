"""The HTTP API: a quart-trio app, its routes and its error mapping."""
