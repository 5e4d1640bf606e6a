"""Trio runtime: labour actors, their registry, the alarm step and the
process manager."""
