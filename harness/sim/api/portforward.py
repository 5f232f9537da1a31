"""`pods/<name>/portforward` over a websocket, as the API server serves it to the kubernetes client.

Protocol (what the client speaks, kubernetes python client `kubernetes/stream/ws_client.py`
PortForward and `create_websocket`): RFC 6455 websocket with subprotocol `v4.channel.k8s.io`;
per requested port two channels, data (2i) and error (2i+1); the server opens each with a frame of
the channel byte and the port as two little-endian bytes; afterwards data frames are the channel byte
plus bytes. Client frames are masked, server frames are not (RFC 6455 5.1).

The sim carries a stream to what a simulated process listens on for that pod port (the same table
`pods/<name>/proxy` uses: `Store.pod_ports`); a port with nothing behind it gets the error channel
message a kubelet writes for a refused connection, and the stream ends.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import socket
import struct
import threading
from typing import BinaryIO

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
PROTOCOL = "v4.channel.k8s.io"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
MAX_FRAME = 16 * 1024 * 1024


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def frame(opcode: int, payload: bytes) -> bytes:
    head = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([n])
    elif n < 1 << 16:
        head += bytes([126]) + struct.pack("!H", n)
    else:
        head += bytes([127]) + struct.pack("!Q", n)
    return head + payload


def _exact(stream: BinaryIO, n: int) -> bytes:
    data = stream.read(n) if n else b""
    if data is None or len(data) < n:
        raise EOFError("websocket closed")
    return data


def read_frame(stream: BinaryIO) -> tuple[int, bytes]:
    b0, b1 = _exact(stream, 2)
    opcode, masked, n = b0 & 0x0F, b1 & 0x80, b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", _exact(stream, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", _exact(stream, 8))[0]
    if n > MAX_FRAME:
        raise EOFError(f"websocket frame of {n} bytes refused")
    mask = _exact(stream, 4) if masked else b""
    payload = _exact(stream, n)
    if mask:
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return opcode, payload


class Stream:
    """One port-forward stream between a websocket (rfile/wfile of the upgraded request) and a backend."""

    def __init__(self, rfile: BinaryIO, wfile: BinaryIO, port: int) -> None:
        self.rfile, self.wfile, self.port = rfile, wfile, port
        self._write = threading.Lock()

    def send(self, opcode: int, payload: bytes) -> None:
        with self._write:
            self.wfile.write(frame(opcode, payload))
            self.wfile.flush()

    def open_channels(self) -> None:
        port = struct.pack("<H", self.port)
        self.send(OP_BINARY, b"\x00" + port)
        self.send(OP_BINARY, b"\x01" + port)

    def refuse(self, message: str) -> None:
        self.send(OP_BINARY, b"\x01" + message.encode())
        self.send(OP_CLOSE, struct.pack("!H", 1000))

    def carry(self, backend: socket.socket) -> None:
        """Backend bytes -> data frames (a thread); data frames -> backend (here), until either side ends."""
        def back() -> None:
            try:
                while True:
                    data = backend.recv(64 * 1024)
                    if not data:
                        break
                    self.send(OP_BINARY, b"\x00" + data)
            except OSError:
                pass
            with contextlib.suppress(OSError, ValueError):
                self.send(OP_CLOSE, struct.pack("!H", 1000))

        thread = threading.Thread(target=back, name="sim-portforward", daemon=True)
        thread.start()
        try:
            while True:
                opcode, payload = read_frame(self.rfile)
                if opcode == OP_CLOSE:
                    break
                if opcode == OP_PING:
                    self.send(OP_PONG, payload)
                elif opcode in (OP_BINARY, OP_CONT) and payload[:1] == b"\x00" and len(payload) > 1:
                    backend.sendall(payload[1:])
        except (EOFError, OSError):
            pass
        finally:
            with contextlib.suppress(OSError):
                backend.shutdown(socket.SHUT_RDWR)
            backend.close()
            thread.join(timeout=5)
