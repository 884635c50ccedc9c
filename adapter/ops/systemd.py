"""systemd's service notifications (`Type=notify`): READY=1 once the daemon runs, WATCHDOG=1
from its health loop, STOPPING=1 when it stops. Without `NOTIFY_SOCKET` (not run by systemd)
nothing is sent.

The protocol is one datagram to a Unix socket (sd_notify(3)); a leading `@` names an
abstract socket.
"""

from __future__ import annotations

import os
import socket


def notify(message: str) -> bool:
    """Send `message` (e.g. `READY=1`) to systemd; False when there is nobody to tell."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    target = "\0" + address[1:] if address.startswith("@") else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), target)
    except OSError:
        return False
    return True
