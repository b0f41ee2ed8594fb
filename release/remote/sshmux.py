"""Stop a shared OpenSSH connection (a ControlMaster) through its control socket.

This is the one request ``ssh -O exit`` makes, spoken directly: OpenSSH's multiplexing
protocol (its ``PROTOCOL.mux``, version 4, stable since OpenSSH 5.6). Each message is an
SSH ``uint32`` length, then a ``uint32`` type and its body. Both sides first say hello;
the client then sends ``MUX_C_TERMINATE`` and the master answers ``MUX_S_OK`` and exits.
Closing a fleet's masters this way starts no ssh process per host. Any answer but the
expected one is reported, and the caller falls back to ``ssh -O exit``.
"""

from __future__ import annotations

import socket
import struct

MUX_MSG_HELLO = 0x00000001
MUX_C_TERMINATE = 0x10000005
MUX_S_OK = 0x80000001
MUX_VERSION = 4
_MAX_MESSAGE = 64 * 1024  # a master's hello or answer is a few bytes; more is not OpenSSH


class MuxError(Exception):
    """The socket answered, but not as an OpenSSH master does."""


def _message(kind: int, *fields: int) -> bytes:
    body = struct.pack(f">{1 + len(fields)}I", kind, *fields)
    return struct.pack(">I", len(body)) + body


def _read_exactly(sock: socket.socket, size: int, *, eof_ok: bool = False) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            if eof_ok and not data:
                return b""
            raise MuxError("the master closed the socket mid-message")
        data += chunk
    return data


def _read_message(sock: socket.socket, *, eof_ok: bool = False) -> tuple[int, bytes] | None:
    """The next message as (type, body); None at the socket's end when ``eof_ok``."""
    head = _read_exactly(sock, 4, eof_ok=eof_ok)
    if not head:
        return None
    (size,) = struct.unpack(">I", head)
    if not 4 <= size <= _MAX_MESSAGE:
        raise MuxError(f"a message of {size} bytes")
    body = _read_exactly(sock, size)
    return struct.unpack(">I", body[:4])[0], body[4:]


def terminate(path: str, timeout: float = 10.0) -> bool:
    """Tell the master listening at ``path`` to stop: True once it said OK, False when no
    master listens there (nothing to stop). ``MuxError`` or ``OSError`` when it could not be
    told: the caller then asks ``ssh -O exit``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        hello = _read_message(sock)
        if hello is None or hello[0] != MUX_MSG_HELLO or hello[1][:4] != struct.pack(">I", MUX_VERSION):
            raise MuxError("no OpenSSH mux hello of version 4")
        sock.sendall(_message(MUX_MSG_HELLO, MUX_VERSION) + _message(MUX_C_TERMINATE, 1))
        try:
            answer = _read_message(sock, eof_ok=True)
        except ConnectionResetError:
            answer = None
        # a master that exits before its answer is flushed has stopped: ssh -O exit counts
        # the socket's end here as done too
        if answer is not None and (answer[0] != MUX_S_OK or answer[1][:4] != struct.pack(">I", 1)):
            raise MuxError(f"the master refused to stop (answer {answer[0]:#x})")
        return True
