"""gRPC transport (needs the ``grpc`` extra: ``grpcio`` and ``protobuf``): one channel
to a Quarry endpoint — ``unix:/path`` or ``host:port``, with TLS and a bearer token — and
on it the ``quarry.v1.Quarry/Session`` stream, whose frames are the JSON-RPC messages of
one connection (GRPC.md §6). The stream is presented as an asyncio reader and writer, so
the same :class:`~.connection.Connection` and the same typed API serve it as serve a
child's pipes: deadlines, cancellation, progress and ``watch/event`` included."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, List, Optional, Tuple, Union

import grpc
import grpc.aio

from ._proto import quarry_pb2, quarry_pb2_grpc

#: Largest message either way, bytes (the server's limit).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024

TlsOption = Union[None, bool, bytes, str, Path]


def channel(
    target: str, *, tls: TlsOption = None, server_name: Optional[str] = None
) -> grpc.aio.Channel:
    """A channel to ``target``: ``unix:/path`` (never TLS) or ``host:port``.

    ``tls``: ``None``/``False`` for plaintext (loopback), ``True`` for the system's root
    certificates, or the CA certificate that signed the server's (PEM bytes, or a path
    to a PEM file). ``server_name`` overrides the name checked against the certificate.
    """
    options: List[Tuple[str, Any]] = [
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ]
    if target.startswith("unix:"):
        # grpc-core would send the socket path as the HTTP/2 :authority, which the
        # server's HTTP/2 layer refuses.
        options.append(("grpc.default_authority", "localhost"))
        return grpc.aio.insecure_channel(target, options=options)
    if tls is None or tls is False:
        return grpc.aio.insecure_channel(target, options=options)
    if tls is True:
        creds = grpc.ssl_channel_credentials()
    else:
        pem = tls if isinstance(tls, bytes) else Path(tls).read_bytes()
        creds = grpc.ssl_channel_credentials(root_certificates=pem)
    if server_name:
        options.append(("grpc.ssl_target_name_override", server_name))
    return grpc.aio.secure_channel(target, creds, options=options)


def metadata(token: Optional[str]) -> Tuple[Tuple[str, str], ...]:
    """Call metadata carrying ``token`` (GRPC.md §3)."""
    return (("authorization", f"Bearer {token}"),) if token else ()


class _FrameWriter:
    """The writer half: each line written becomes one frame of the session."""

    def __init__(self, call: Any) -> None:
        self._call = call
        self._buf = bytearray()
        self._queue: "asyncio.Queue[Optional[bytes]]" = asyncio.Queue()
        self._closing = False
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while True:
                line = await self._queue.get()
                try:
                    if line is None:
                        await self._call.done_writing()
                        return
                    await self._call.write(quarry_pb2.JsonRpcFrame(message=line))
                finally:
                    self._queue.task_done()
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError, Exception):
            self._closing = True
            # Whatever is still queued is lost with the stream; unblock drain().
            while not self._queue.empty():
                self._queue.get_nowait()
                self._queue.task_done()

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        self._buf += data
        while True:
            end = self._buf.find(b"\n")
            if end < 0:
                return
            self._queue.put_nowait(bytes(self._buf[:end]))
            del self._buf[: end + 1]

    async def drain(self) -> None:
        await self._queue.join()

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if not self._closing:
            self._closing = True
            self._queue.put_nowait(None)

    async def wait_closed(self) -> None:
        try:
            await asyncio.wait_for(asyncio.shield(self._task), 2.0)
        except (asyncio.TimeoutError, Exception):
            self._task.cancel()


class Session:
    """One ``Session`` call on ``chan``: :attr:`reader` yields the server's JSON lines,
    :attr:`writer` sends ours."""

    def __init__(self, chan: grpc.aio.Channel, token: Optional[str], limit: int) -> None:
        self.channel = chan
        self.token = token
        stub = quarry_pb2_grpc.QuarryStub(chan)  # type: ignore[no-untyped-call]
        self._call = stub.Session(metadata=metadata(token))
        self.reader = asyncio.StreamReader(limit=limit)
        self.writer = _FrameWriter(self._call)
        self._pump = asyncio.create_task(self._read())
        #: The status the stream ended with (``None`` while it runs or if it ended OK).
        self.error: Optional[grpc.aio.AioRpcError] = None

    async def _read(self) -> None:
        try:
            while True:
                frame = await self._call.read()
                if frame is grpc.aio.EOF:
                    break
                self.reader.feed_data(frame.message + b"\n")
        except grpc.aio.AioRpcError as e:
            self.error = e
        except asyncio.CancelledError:
            pass
        finally:
            self.reader.feed_eof()

    async def close(self) -> None:
        """Ends the session and closes the channel."""
        self.writer.close()
        await self.writer.wait_closed()
        self._call.cancel()
        self._pump.cancel()
        await self.channel.close()
