"""fernd's benchmark suite: `python -m bench` (or `make bench`)."""
