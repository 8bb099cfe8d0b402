"""A loopback TCP proxy a test can cut silently: a network partition without closing any connection.

While cut, the proxy stops reading from both sides: bytes wait in the kernel's buffers, the peers see
no error and no reply (as when packets are dropped and TCP keeps retransmitting), and nothing is lost
or reordered: when the partition heals, the delayed bytes flow on.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator

CHUNK = 65536


class PartitionProxy:
    """127.0.0.1:`port` forwards to `target_port`; `cut()` and `heal()` toggle the flow."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._flowing = threading.Event()
        self._flowing.set()
        self._closing = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def cut(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def start(self) -> PartitionProxy:
        self._spawn(self._accept)
        return self

    def close(self) -> None:
        self._closing.set()
        self._flowing.set()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        while not self._closing.is_set():
            self._flowing.wait()
            try:
                ready, _, _ = select.select([source], [], [], 0.05)
                if not ready:
                    continue
                if not self._flowing.is_set():
                    continue  # cut between the wait and the read: leave the bytes where they are
                data = source.recv(CHUNK)
                if not data:
                    break
                sink.sendall(data)
            except (OSError, ValueError):  # ValueError: select() on a socket close() just closed
                break
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def partition_proxy(target_port: int) -> Iterator[PartitionProxy]:
    proxy = PartitionProxy(target_port).start()
    try:
        yield proxy
    finally:
        proxy.close()
