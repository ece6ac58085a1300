"""projctld's plugins (pluggy): what a plugin imports is here: `hookimpl`, `Upstream`, `Snapshot`,
`RequestRefused`.

The hooks are in hookspecs.py, the host that loads and calls plugins in host.py, a plugin's own
requests (projctl_request) in requests.py, and the built-in notifier in notifier.py.
docs/workflows-and-plugins.md, Plugins, tells the whole story.
"""

from __future__ import annotations

from projctld.plugins.hookspecs import hookimpl
from projctld.plugins.requests import RequestRefused
from projctld.plugins.upstreams import Upstream
from projctld.upstream.providers.model import Snapshot

__all__ = ["RequestRefused", "Snapshot", "Upstream", "hookimpl"]
