"""Tell a service manager (systemd's ``Type=notify``) how ``suricate serve`` is doing.

The protocol (sd_notify(3)) is one datagram per notification, ``KEY=VALUE`` lines, to the
AF_UNIX socket named by ``$NOTIFY_SOCKET``: a file system path, or a name in Linux's abstract
namespace written with a leading ``@``. Without the variable every call does nothing, so a
server started from a shell behaves as before; no libsystemd is needed.

What ``serve`` says (contrib/suricate.service, docs/operations.md "Running under systemd"):

- ``READY=1`` once every listener accepts connections (after the ``serving`` line's work), so
  units ordered ``After=suricate.service`` start when clients can connect;
- ``RELOADING=1`` with ``MONOTONIC_USEC`` (sd_notify(3): the clock the manager compares) when
  SIGHUP makes it read its certificates again, then ``READY=1`` when done;
- ``STOPPING=1`` when a stop begins (SIGTERM, SIGINT or the admin API's ``server stop``);
- ``STATUS=`` a line for ``systemctl status``.
"""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("suricate.server")


class Notifier:
    """The service manager's socket, or nothing. Failures to send are logged once and
    otherwise ignored: the server serves whether or not its manager hears it."""

    __slots__ = ("address", "_failed")

    def __init__(self, address: str | None) -> None:
        if address and address.startswith("@"):
            # sd_notify(3): "@" stands for the NUL byte that starts an abstract name.
            address = "\0" + address[1:]
        self.address = address or None
        self._failed = False

    @classmethod
    def from_environment(cls) -> Notifier:
        return cls(os.environ.get("NOTIFY_SOCKET"))

    def __bool__(self) -> bool:
        return self.address is not None

    def notify(self, *lines: str) -> bool:
        """Send ``lines`` as one datagram; False when there is no socket or it failed."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            if not self._failed:
                self._failed = True
                log.warning("sd_notify_failed socket=%s reason=%s", os.environ.get(
                    "NOTIFY_SOCKET"), exc)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", f"STATUS={status}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC: the manager ignores a RELOADING=1 older than its own reload request
        # (systemd 253's Type=notify-reload); CLOCK_MONOTONIC in microseconds.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}",
                           "STATUS=reading the TLS certificates again")

    def stopping(self) -> bool:
        return self.notify("STOPPING=1", "STATUS=shutting down")
