"""Operator tools: backup and restore, integrity checks, export and erasure."""
