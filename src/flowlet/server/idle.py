"""Close plain-HTTP connections that send nothing at all.

granian's HTTP/1 header-read timeout only starts with the first byte of a request, so a client
that connects and stays silent holds a connection (and its memory) forever. This thread looks at
the worker's accepted connections a few times per interval and shuts down the ones that have
been open longer than the header-read timeout without receiving a single byte (the kernel's
TCP_INFO says both). A connection that sent anything, or a TLS one, is left to granian.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
import time

_TCP_INFO_LEN = 136
_LAST_DATA_RECV = struct.Struct("=I")    # ms since the last data (or the connection) arrived, offset 52
_BYTES_RECEIVED = struct.Struct("=Q")    # payload bytes received so far, offset 128


def start(listen_port: int, timeout_s: float) -> None:
    if not hasattr(socket, "TCP_INFO") or not os.path.isdir("/proc/self/fd"):
        return
    threading.Thread(target=_run, args=(listen_port, timeout_s), name="flowlet-idle-close", daemon=True).start()


def _run(listen_port: int, timeout_s: float) -> None:
    limit_ms = int(timeout_s * 1000)
    while True:
        time.sleep(max(0.5, timeout_s / 5))
        for name in os.listdir("/proc/self/fd"):
            _close_if_silent(int(name), listen_port, limit_ms)


def _close_if_silent(fd: int, listen_port: int, limit_ms: int) -> None:
    try:
        own = os.dup(fd)                            # our own descriptor: granian keeps its
    except OSError:
        return
    try:
        sock = socket.socket(fileno=own)
    except OSError:                                 # not a socket
        os.close(own)
        return
    try:
        if sock.type != socket.SOCK_STREAM or sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        if sock.getsockname()[1] != listen_port:    # an outbound connection (http steps, stores)
            return
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        if len(info) < _TCP_INFO_LEN:
            return
        silent_ms = _LAST_DATA_RECV.unpack_from(info, 52)[0]
        if _BYTES_RECEIVED.unpack_from(info, 128)[0] == 0 and silent_ms >= limit_ms:
            sock.getpeername()                      # raises for the listening socket itself
            sock.shutdown(socket.SHUT_RDWR)         # granian sees the end and closes its side
    except OSError:
        pass
    finally:
        sock.close()
