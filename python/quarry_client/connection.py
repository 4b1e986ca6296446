"""One JSON-RPC 2.0 connection over a pair of asyncio byte streams: request ids,
pending calls, progress callbacks, notification fan-out and the one reader. Knows
nothing of processes (see :mod:`.process`) nor of Quarry's methods (see :mod:`.client`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import re
from typing import Any, Callable, Dict, Iterator, Optional, Set, Tuple

from .errors import ConnectionLost, MessageTooLarge, QuarryError, QuarryTimeout, error_from_response
from .types import Progress

log = logging.getLogger("quarry")

#: Longest line read from the sidecar, in bytes. The protocol's default message limit
#: is 16 MiB; results can be larger than what a request may be.
STREAM_LIMIT = 64 * 1024 * 1024

#: Bytes kept of an over-long line, to find whose response it was.
_HEAD = 4096
#: The start of every response the server writes (PROTOCOL.md §2; ids are ours: integers).
_RESPONSE_ID = re.compile(rb'\{"jsonrpc":"2\.0","id":(\d+)')

ProgressCallback = Callable[[Progress], None]


class Subscription:
    """An async iterator over one subscriber queue, registered at creation (so nothing
    published between subscribing and the first ``async for`` step is lost)."""

    def __init__(self, owner: "Subscribers") -> None:
        self._owner = owner
        self._queue: "asyncio.Queue[Any]" = asyncio.Queue()
        owner._queues.add(self._queue)

    def __aiter__(self) -> "Subscription":
        return self

    async def __anext__(self) -> Any:
        item = await self._queue.get()
        if item is _END:
            self.close()
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Stops receiving."""
        self._owner._queues.discard(self._queue)


class Subscribers:
    """Fan-out of a stream of items to any number of subscriptions."""

    def __init__(self) -> None:
        self._queues: Set["asyncio.Queue[Any]"] = set()
        self._closed = False

    def publish(self, item: Any) -> None:
        for q in list(self._queues):
            q.put_nowait(item)

    def close(self) -> None:
        self._closed = True
        self.publish(_END)

    def subscribe(self) -> Subscription:
        sub = Subscription(self)
        if self._closed:
            sub._queue.put_nowait(_END)
        return sub


_END = object()


class LineSplitter:
    """Cuts chunks into lines. A line longer than ``limit`` is not kept: its first
    bytes and its length are reported instead, and the next line starts clean."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._dropping = False
        self._head = b""
        self._dropped = 0

    def feed(self, chunk: bytes) -> Iterator[Tuple[Any, ...]]:
        """Yields ``("line", bytes)`` and ``("too_large", head, size)`` items."""
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            if self._dropping:
                self._dropped += len(piece)
            elif len(self._buf) + len(piece) > self.limit:
                self._dropping = True
                self._head = bytes(self._buf[:_HEAD]) + piece[: max(0, _HEAD - len(self._buf))]
                self._dropped = len(self._buf) + len(piece)
                self._buf.clear()
            else:
                self._buf += piece
            if end < 0:
                return
            if self._dropping:
                yield ("too_large", self._head, self._dropped)
                self._dropping = False
                self._head = b""
            else:
                yield ("line", bytes(self._buf))
            self._buf.clear()
            start = end + 1


class Connection:
    """Requests and notifications over ``reader`` (the peer's stdout) and ``writer``
    (its stdin). Call :meth:`start` once; every pending call fails with
    :class:`ConnectionLost` when the peer's output ends."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        max_line_bytes: int = STREAM_LIMIT,
        on_notification: Optional[Callable[[str, Any], None]] = None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._max_line = max_line_bytes
        self._on_notification = on_notification
        self._ids = itertools.count(1)
        #: Calls awaiting their response, by id.
        self.pending: Dict[int, "asyncio.Future[Any]"] = {}
        self._progress: Dict[int, ProgressCallback] = {}
        self._write_lock = asyncio.Lock()
        self._task: Optional["asyncio.Task[None]"] = None
        #: Lines dropped for being longer than ``max_line_bytes``.
        self.too_large_lines = 0

    @property
    def closed(self) -> bool:
        """Whether the peer's output has ended (or reading was aborted)."""
        return self._task is not None and self._task.done()

    def start(self) -> None:
        """Starts the reader task."""
        self._task = asyncio.create_task(self._read())

    async def wait_closed(self, timeout: float) -> None:
        """Waits (at most ``timeout`` s) for the reader to see the end of the output."""
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout)
            except (asyncio.TimeoutError, Exception):
                pass

    def abort(self, error: QuarryError) -> None:
        """Stops reading and fails every pending call with ``error``."""
        if self._task is not None:
            self._task.cancel()
        self._fail_all(error)

    # ------------------------------------------------------------------ reading

    async def _read(self) -> None:
        splitter = LineSplitter(self._max_line)
        try:
            while True:
                chunk = await self._reader.read(256 * 1024)
                if not chunk:
                    break
                for item in splitter.feed(chunk):
                    if item[0] == "line":
                        self._line(item[1])
                    else:
                        self._too_large(item[1], item[2])
        except (ConnectionError, OSError) as e:
            log.warning("quarry: reading from the sidecar failed: %s", e)
        finally:
            self._fail_all(ConnectionLost("the sidecar closed its output"))
            if self._on_notification is not None:
                self._on_notification("$/closed", None)

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        try:
            msg = json.loads(line)
        except ValueError:
            log.warning("quarry: ignoring a non-JSON line from the sidecar: %r", line[:200])
            return
        for m in msg if isinstance(msg, list) else [msg]:
            self._dispatch(m)

    def _too_large(self, head: bytes, size: int) -> None:
        """Fails the calls whose responses were in a dropped line; the stream goes on."""
        self.too_large_lines += 1
        ids = [int(m) for m in _RESPONSE_ID.findall(head)]
        failed = 0
        for rid in ids:
            fut = self.pending.pop(rid, None)
            if fut is not None and not fut.done():
                fut.set_exception(
                    MessageTooLarge(
                        f"the response was {size} bytes, over this client's limit of {self._max_line}",
                        code=-32600,
                        data={"size": size, "limit": self._max_line},
                    )
                )
                failed += 1
        log.error(
            "quarry: dropped a %d-byte line from the sidecar (limit %d); failed %d call(s)",
            size,
            self._max_line,
            failed,
        )

    def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        method = msg.get("method")
        if method is None:
            rid = msg.get("id")
            fut = self.pending.pop(rid, None) if isinstance(rid, int) else None
            if fut is None or fut.done():
                return
            if isinstance(msg.get("error"), dict):
                fut.set_exception(error_from_response(msg["error"]))
            else:
                fut.set_result(msg.get("result"))
            return
        params = msg.get("params")
        if method == "notifications/progress" and isinstance(params, dict):
            cb = self._progress.get(params.get("progressToken"))  # type: ignore[arg-type]
            if cb is not None:
                try:
                    cb(Progress(float(params["progress"]), params.get("total"), params.get("message")))
                except Exception:  # a host callback must not kill the reader
                    log.exception("quarry: progress callback failed")
            return
        if self._on_notification is not None:
            self._on_notification(method, params)

    def _fail_all(self, error: QuarryError) -> None:
        pending, self.pending = self.pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)

    # ------------------------------------------------------------------ writing

    async def _write(self, msg: Dict[str, Any]) -> None:
        if self._writer.is_closing():
            raise ConnectionLost("the sidecar's input is closed")
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        async with self._write_lock:
            self._writer.write(data)
            try:
                await self._writer.drain()
            except (ConnectionError, BrokenPipeError) as e:
                raise ConnectionLost(f"cannot write to the sidecar: {e}") from e

    async def notify(self, method: str, params: Any = None) -> None:
        """Sends a notification (no response)."""
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        await self._write(msg)

    async def request(
        self,
        method: str,
        params: Any,
        meta: Optional[Dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        client_timeout: Optional[float] = None,
    ) -> Any:
        """Sends a request and awaits its result (raises the typed error). Cancelling
        the awaiting task sends ``notifications/cancelled``; ``client_timeout`` (s) is
        the client's own limit, after which it cancels and raises :class:`QuarryTimeout`."""
        rid = next(self._ids)
        if on_progress is not None:
            meta = dict(meta or {})
            meta["progressToken"] = rid
            self._progress[rid] = on_progress
        if meta:
            if params is None:
                params = {}
            if not isinstance(params, dict):
                raise TypeError("params must be a dict to carry _meta")
            params = {**params, "_meta": meta}
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            msg["params"] = params
        fut: "asyncio.Future[Any]" = asyncio.get_running_loop().create_future()
        self.pending[rid] = fut
        try:
            await self._write(msg)
            if client_timeout is None:
                return await fut
            return await asyncio.wait_for(asyncio.shield(fut), client_timeout)
        except asyncio.TimeoutError:
            await self._cancel_quietly(rid)
            raise QuarryTimeout(
                f"{method}: no answer within {client_timeout:.3f} s", code=-32001, kind="timeout"
            ) from None
        except asyncio.CancelledError:
            # The awaiting task was cancelled: tell the sidecar to stop the work.
            await asyncio.shield(self._cancel_quietly(rid))
            raise
        finally:
            self.pending.pop(rid, None)
            self._progress.pop(rid, None)

    async def _cancel_quietly(self, rid: int) -> None:
        if self.pending.pop(rid, None) is None and self._writer.is_closing():
            return
        try:
            await self.notify("notifications/cancelled", {"requestId": rid})
        except QuarryError:
            pass


__all__ = ["Connection", "Subscribers", "Subscription", "LineSplitter", "STREAM_LIMIT"]
