"""A real D-Bus session bus (dbus-daemon) with a notification server of ours that records calls.

The server implements org.freedesktop.Notifications as the Desktop Notifications
Specification defines it (Notify, CloseNotification, GetCapabilities, GetServerInformation;
the ActionInvoked and NotificationClosed signals), with dbus-fast, on a thread of its own.
"""
# ruff: noqa: F722, F821, UP037  (dbus-fast reads D-Bus signatures from the annotations)

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field

from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface, method, signal

NAME = "org.freedesktop.Notifications"
PATH = "/org/freedesktop/Notifications"


@dataclass
class Shown:
    id: int
    app: str
    summary: str
    body: str
    actions: list[str]


class _Server(ServiceInterface):
    def __init__(self, shown: list[Shown], lock: threading.Lock, at: list[float]) -> None:
        super().__init__(NAME)
        self._shown, self._lock, self._at = shown, lock, at

    @method()
    def Notify(self, app_name: "s", replaces_id: "u", app_icon: "s", summary: "s",
               body: "s", actions: "as", hints: "a{sv}", expire_timeout: "i") -> "u":
        with self._lock:
            number = len(self._shown) + 1
            self._shown.append(Shown(number, app_name, summary, body, list(actions)))
            self._at.append(time.monotonic())
        return number

    @method()
    def CloseNotification(self, id: "u"):
        pass

    @method()
    def GetCapabilities(self) -> "as":
        return ["body", "actions"]

    @method()
    def GetServerInformation(self) -> "ssss":
        return ["projctl-test", "projctl", "1.0", "1.2"]

    @signal()
    def ActionInvoked(self, id: int, key: str) -> "us":
        return [id, key]

    @signal()
    def NotificationClosed(self, id: int, reason: int) -> "uu":
        return [id, reason]


@dataclass
class SessionBus:
    address: str
    process: subprocess.Popen[str]
    shown: list[Shown] = field(default_factory=list)
    shown_at: list[float] = field(default_factory=list)  # time.monotonic() of each
    lock: threading.Lock = field(default_factory=threading.Lock)
    _loop: asyncio.AbstractEventLoop | None = None
    _server: _Server | None = None

    def serve_notifications(self) -> None:
        """Start our notification server on the bus (once it answers, return)."""
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop

            async def main() -> None:
                bus = await MessageBus(bus_address=self.address).connect()
                self._server = _Server(self.shown, self.lock, self.shown_at)
                bus.export(PATH, self._server)
                await bus.request_name(NAME)
                ready.set()
                with contextlib.suppress(Exception):  # the bus stopping ends it
                    await bus.wait_for_disconnect()

            loop.run_until_complete(main())

        threading.Thread(target=run, daemon=True).start()
        assert ready.wait(10), "the test notification server did not start"

    def click(self, id: int) -> None:
        """The user clicks notification `id` (its default action)."""
        assert self._loop is not None and self._server is not None
        self._loop.call_soon_threadsafe(self._server.ActionInvoked, id, "default")

    def wait_for(self, count: int, timeout: float = 20.0) -> list[Shown]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.shown) >= count:
                    return list(self.shown)
            time.sleep(0.05)
        with self.lock:
            return list(self.shown)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(5)


def start_session_bus() -> SessionBus:
    """`dbus-daemon --session` on a socket of its own; its address as the bus prints it."""
    directory = tempfile.mkdtemp(prefix="pjbus", dir="/tmp")
    process = subprocess.Popen(
        ["dbus-daemon", "--session", "--nofork", "--print-address=1",
         f"--address=unix:path={os.path.join(directory, 'bus')}"],
        stdout=subprocess.PIPE, text=True)
    address = process.stdout.readline().strip()  # type: ignore[union-attr]
    assert address.startswith("unix:"), f"dbus-daemon did not start: {address!r}"
    return SessionBus(address, process)
