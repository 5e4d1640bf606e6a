"""fernd: a self-hosted labour tracker that runs as one Python process."""

__version__ = "0.1.0"
