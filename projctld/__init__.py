"""projctld: the per-user daemon that keeps projctl's state warm and serves it over a socket."""

from projctl_client import __version__

__all__ = ["__version__"]
