"""The sockets of ``serve --workers``: the port the supervisor reserves, each front's socket
on it, and which of them listen (Linux: ``SO_REUSEPORT`` and ``/proc/net/tcp``).

Every socket on the port is bound with ``SO_REUSEPORT``: the kernel hashes each new connection
to one of the sockets that *listen*, so the supervisor's reservation (bound, never listening)
receives none, and a front's socket receives connections from the moment its server calls
``listen`` until it is closed (the front's exit closes it).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["front_socket", "inode", "listening_inodes", "reserve_port"]

#: TCP state LISTEN in /proc/net/tcp
_LISTEN = "0A"


def _socket(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


@contextmanager
def reserve_port(host: str, port: int) -> Iterator[socket.socket]:
    """The port, held for the whole run by a socket bound with ``SO_REUSEPORT`` that never
    listens: it receives no connection, and no program without ``SO_REUSEPORT`` (of another
    user, with it) can take the port while fronts restart. Port 0 picks one."""
    with _socket(host) as reserved:
        reserved.bind((host, port))
        yield reserved


@contextmanager
def front_socket(host: str, port: int) -> Iterator[socket.socket]:
    """A front's socket on the reserved port, bound but not listening: the front's hypercorn
    calls ``listen`` once it serves, and only then does the kernel send it connections, so
    none waits on a front still starting. TCP_NODELAY set here is inherited by every
    accepted connection (hypercorn sets it only on sockets it binds itself)."""
    with _socket(host) as listener:
        listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        listener.bind((host, port))
        yield listener


def inode(sock: socket.socket) -> int:
    """The socket's inode: what /proc/net/tcp names it by."""
    return os.fstat(sock.fileno()).st_ino


def listening_inodes() -> set[int] | None:
    """The inodes of every TCP socket that listens in this network namespace, or None where
    /proc/net/tcp cannot be read (not Linux). Blocks on reading two small files."""
    found: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)  # the header
                for line in lines:
                    fields = line.split()
                    if fields[3] == _LISTEN:
                        found.add(int(fields[9]))
        except FileNotFoundError:  # no IPv6 here, or no /proc at all
            if table == "/proc/net/tcp":
                return None
    return found
