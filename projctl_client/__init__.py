"""projctl's client: stdlib, msgspec and click only; every answer comes from the daemon."""

__version__ = "0.1.0"
