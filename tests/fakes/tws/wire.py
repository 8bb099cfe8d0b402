"""One accepted client socket of the fake gateway, read with the kernel's receive time of its bytes.

The fake shares its process, and its event loop, with the client under test. A stall of that process
(a loaded test machine) delays when the fake gets round to reading; were a message's arrival the time
the fake read it, a burst the client sent a second ago would be counted with the next burst, and the
fake would refuse (error 100) a rate the real gateway, in a process of its own, never saw. So the
pacer counts a message at the time the kernel received it (`SO_TIMESTAMPNS`: on loopback, the moment
the client's write reached the socket), as the real gateway sees it arrive.

The transport writes; it never reads (reading is paused before it starts): the bytes are read here,
from a duplicate of the socket, with `recvmsg`, so each chunk keeps its stamp. A frame's stamp is that
of the chunk holding its last byte. Where the kernel gives no stamp, the time of the read stands in.

The reads happen on a thread of their own, not on the event loop: a TCP read's stamp is that of the
last segment it consumed, and the kernel merges small segments that wait unread into one (stamped
with the newest). Were the reads on a stalled loop, a second's worth of messages would come out of
one read carrying the last one's time and look like one burst over the limit. The thread reads as
they arrive (blocking reads release the GIL), and hands each chunk to the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

# Linux's value (asm-generic, x86, arm); the socket module does not name it.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
_READ_SIZE = 65536
_STAMP = struct.Struct("qq")  # struct timespec: seconds, nanoseconds
_ANCILLARY_SIZE = socket.CMSG_SPACE(_STAMP.size)


class Wire(asyncio.Protocol):
    """Bytes in (`readexactly`, each read with its receive time), bytes out (`write`, `drain`)."""

    def __init__(self, on_open: Callable[[Wire], None]) -> None:
        self._on_open = on_open
        self._transport: asyncio.Transport | None = None
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._chunks: deque[tuple[int, float]] = deque()  # (bytes of it still unread, receive time)
        self._eof = False
        self._readable: asyncio.Future[None] | None = None
        self._writable = asyncio.Event()
        self._writable.set()

    # --- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.pause_reading()  # before the transport's first read: every byte is read here
        self._transport = transport
        sock = transport.get_extra_info("socket").dup()
        if sys.platform == "linux":
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setblocking(True)
        self._sock = sock
        loop = asyncio.get_running_loop()
        threading.Thread(target=self._read_forever, args=(sock, loop), daemon=True, name="tws-wire").start()
        self._on_open(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_reading()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # --- reading ----------------------------------------------------------------------------------

    async def readexactly(self, n: int) -> tuple[bytes, float]:
        """The next `n` bytes and the time the last of them reached the socket."""
        while len(self._buffer) < n:
            if self._eof:
                raise asyncio.IncompleteReadError(bytes(self._buffer), n)
            self._readable = asyncio.get_running_loop().create_future()
            await self._readable
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data, self._consume(n)

    def _consume(self, n: int) -> float:
        stamp = time.time()
        while n > 0:
            left, stamp = self._chunks[0]
            if left > n:
                self._chunks[0] = (left - n, stamp)
                break
            self._chunks.popleft()
            n -= left
        return stamp

    def _read_forever(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        """The reader thread: every chunk, with its receive time, to the loop; then the end."""
        while True:
            try:
                data, ancillary, _, _ = sock.recvmsg(_READ_SIZE, _ANCILLARY_SIZE)
            except OSError:
                data, ancillary = b"", []
            try:
                loop.call_soon_threadsafe(self._received, data, _stamp(ancillary))
            except RuntimeError:  # the loop is closed: nobody reads any more
                return
            if not data:
                return

    def _received(self, data: bytes, stamp: float) -> None:
        if self._eof:
            return
        if not data:
            self._end_reading()
            self.close()
            return
        self._buffer += data
        self._chunks.append((len(data), stamp))
        self._wake_reader()

    def _wake_reader(self) -> None:
        if self._readable is not None and not self._readable.done():
            self._readable.set_result(None)

    def _end_reading(self) -> None:
        self._eof = True
        if self._sock is not None:
            with contextlib.suppress(OSError):  # wakes the reader thread's blocked read
                self._sock.shutdown(socket.SHUT_RD)
            self._sock.close()
            self._sock = None
        self._wake_reader()

    # --- writing ----------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    async def drain(self) -> None:
        """As StreamWriter's: a closed connection raises, so its session handles nothing more."""
        if self.is_closing():
            raise ConnectionResetError("connection closed")
        await self._writable.wait()

    def is_closing(self) -> bool:
        return self._transport is None or self._transport.is_closing()

    def close(self) -> None:
        """Close the socket (both descriptors): the client sees the connection end."""
        self._end_reading()
        if self._transport is not None:
            self._transport.close()


def _stamp(ancillary: list[tuple[int, int, bytes]]) -> float:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= _STAMP.size:
            seconds, nanoseconds = _STAMP.unpack_from(data)
            return float(seconds) + float(nanoseconds) / 1e9
    return time.time()
