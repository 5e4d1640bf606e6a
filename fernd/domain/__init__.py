"""The labour domain: commands, events, state, rules and policies.

Nothing in this package performs I/O or imports Trio or apsw, so every rule can
be tested without a server.
"""
