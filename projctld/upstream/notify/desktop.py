"""Showing a notification on the desktop (desktop-notifier), or saying why it cannot be shown.

Linux: freedesktop notifications over the D-Bus session bus; macOS: the notification centre.
Without a desktop (a server, SSH, no session bus) nothing is tried and nothing fails: the
notification is recorded as not shown, with the reason. Clicking one opens its URL where the
notification server supports actions.
"""

from __future__ import annotations

import logging
import os
import platform
import webbrowser

from projctld.logging import get_logger

log = get_logger(__name__)
# desktop-notifier logs every failed delivery with its traceback; we record why instead.
logging.getLogger("desktop_notifier").setLevel(logging.CRITICAL)


def session_bus() -> str | None:
    """Why no notification can be shown here, or None when a desktop may show it."""
    if platform.system() == "Darwin":
        return None
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    if address:
        return None
    if os.path.exists(f"/run/user/{os.getuid()}/bus"):  # where systemd puts the user's bus
        return None
    return "no desktop session bus (DBUS_SESSION_BUS_ADDRESS is not set)"


class Desktop:
    """One notifier for the daemon's life; it connects to the bus at the first notification."""

    def __init__(self, app_name: str = "projctl") -> None:
        self._app_name = app_name
        self._notifier = None

    def available(self) -> str:
        """What delivery is possible, for `projctl notifications`."""
        missing = session_bus()
        if missing is not None:
            return f"none ({missing})"
        return "notification centre" if platform.system() == "Darwin" else "dbus"

    async def show(self, title: str, body: str, url: str | None) -> str | None:
        """Show one notification; None when the desktop took it, else why not."""
        missing = session_bus()
        if missing is not None:
            return missing
        if self._notifier is None:
            from desktop_notifier import DesktopNotifier  # imports D-Bus only when needed

            self._notifier = DesktopNotifier(app_name=self._app_name)
        taken: list[bool] = []
        try:
            await self._notifier.send(
                title=title, message=body, on_dispatched=lambda: taken.append(True),
                on_clicked=(lambda: _open(url)) if url else None)
        except Exception as exc:  # the library's own fault must not cost the daemon
            log.warning("desktop_notification_failed", error=repr(exc))
            return f"the desktop refused it ({type(exc).__name__})"
        if not taken:
            return "the notification server did not take it (is one running on the session bus?)"
        return None


def _open(url: str) -> None:
    try:
        webbrowser.open(url)
    except Exception as exc:  # no browser here: nothing to do but say so
        log.warning("open_url_failed", url=url, error=repr(exc))
