"""The asyncio client: spawns ``quarry supervise -- quarry serve`` (or ``quarry serve``)
and speaks the Quarry protocol (JSON-RPC 2.0, one message per line) over its pipes."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import shutil
import signal
import sys
from pathlib import Path
from typing import (
    Any,
    AsyncIterator,
    Callable,
    Dict,
    List,
    Optional,
    Sequence,
    Set,
    Union,
)

from .errors import ConnectionLost, QuarryError, QuarryTimeout, error_from_response
from .types import (
    CollectionInfo,
    Health,
    IngestDirResult,
    IngestResult,
    Notification,
    Progress,
    SearchHit,
    SupervisorEvent,
    WatchEvent,
)

log = logging.getLogger("quarry")
sidecar_log = logging.getLogger("quarry.sidecar")

#: Longest line read from the sidecar. asyncio's 64 KiB default breaks on large
#: results; the protocol's default message limit is 16 MiB.
STREAM_LIMIT = 64 * 1024 * 1024

#: Flags that belong to ``quarry supervise`` rather than ``quarry serve``.
SUPERVISOR_FLAGS = frozenset(
    {
        "health_interval_ms",
        "health_timeout_ms",
        "health_failures",
        "max_restarts",
        "restart_window_ms",
        "backoff_initial_ms",
        "backoff_max_ms",
        "max_rss_mb",
        "start_timeout_ms",
    }
)

PathLike = Union[str, "os.PathLike[str]"]
ProgressCallback = Callable[[Progress], None]


def find_binary(binary: Optional[PathLike] = None) -> str:
    """The ``quarry`` executable: the argument, ``$QUARRY_BIN``, ``PATH``, then the
    repository's ``target/release`` (or ``$CARGO_TARGET_DIR/release``).

    Raises :class:`FileNotFoundError` naming where it looked."""
    tried: List[str] = []
    for candidate in (binary, os.environ.get("QUARRY_BIN")):
        if candidate:
            p = Path(candidate)
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
            tried.append(str(p))
    on_path = shutil.which("quarry")
    if on_path:
        return on_path
    tried.append("PATH")
    repo = Path(__file__).resolve().parents[2]
    targets = [repo / "target"]
    if os.environ.get("CARGO_TARGET_DIR"):
        targets.insert(0, Path(os.environ["CARGO_TARGET_DIR"]))
    for t in targets:
        for profile in ("release", "debug"):
            p = t / profile / "quarry"
            if p.is_file() and os.access(p, os.X_OK):
                return str(p)
            tried.append(str(p))
    raise FileNotFoundError("quarry binary not found; tried " + ", ".join(tried))


def _flags(flags: Dict[str, Any]) -> List[str]:
    out: List[str] = []
    for key, value in flags.items():
        name = "--" + key.replace("_", "-")
        if value is True:
            out.append(name)
        elif value is False or value is None:
            continue
        else:
            out.extend([name, str(value)])
    return out


def _tree_params(
    root: PathLike,
    collection: Optional[str],
    include: Optional[Sequence[str]],
    exclude: Optional[Sequence[str]],
) -> Dict[str, Any]:
    """Params shared by ``documents/ingestDir`` and ``watch/start``."""
    params: Dict[str, Any] = {"root": os.fspath(root)}
    if collection is not None:
        params["collection"] = collection
    if include:
        params["include"] = list(include)
    if exclude:
        params["exclude"] = list(exclude)
    return params


class _Subscription:
    """An async iterator over one subscriber queue, registered at creation (so nothing
    published between subscribing and the first ``async for`` step is lost)."""

    def __init__(self, owner: "_Subscribers") -> None:
        self._owner = owner
        self._queue: "asyncio.Queue[Any]" = asyncio.Queue()
        owner._queues.add(self._queue)

    def __aiter__(self) -> "_Subscription":
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


class _Subscribers:
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

    def subscribe(self) -> _Subscription:
        sub = _Subscription(self)
        if self._closed:
            sub._queue.put_nowait(_END)
        return sub


_END = object()


class _Spawn:
    """``QuarryClient.spawn(...)``: an async context manager, or awaitable."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._client: Optional[QuarryClient] = None

    async def _start(self) -> "QuarryClient":
        self._client = await QuarryClient._start(**self._kwargs)
        return self._client

    def __await__(self):  # type: ignore[no-untyped-def]
        return self._start().__await__()

    async def __aenter__(self) -> "QuarryClient":
        return await self._start()

    async def __aexit__(self, *exc: Any) -> None:
        if self._client is not None:
            await self._client.close()


class QuarryClient:
    """A connection to one (supervised) Quarry sidecar.

    Use ``async with QuarryClient.spawn(...) as q:``. Every method is a coroutine;
    hundreds of calls may be in flight at once. Errors are :class:`QuarryError`
    subclasses keyed by the protocol's ``data.kind``.
    """

    def __init__(self, process: asyncio.subprocess.Process, supervised: bool) -> None:
        self._proc = process
        self.supervised = supervised
        self._ids = itertools.count(1)
        self._pending: Dict[int, "asyncio.Future[Any]"] = {}
        self._progress: Dict[int, ProgressCallback] = {}
        self._events = _Subscribers()
        self._notifications = _Subscribers()
        self._watch_events = _Subscribers()
        self._ready: "asyncio.Future[Dict[str, Any]]" = asyncio.get_running_loop().create_future()
        self._write_lock = asyncio.Lock()
        self._closed = False
        self._reader = asyncio.create_task(self._read_stdout())
        self._stderr = asyncio.create_task(self._read_stderr())
        #: The last ``sidecar/ready`` params.
        self.ready: Dict[str, Any] = {}

    # ----------------------------------------------------------------- lifecycle

    @classmethod
    def spawn(
        cls,
        binary: Optional[PathLike] = None,
        supervised: bool = True,
        data_dir: Optional[PathLike] = None,
        *,
        env: Optional[Dict[str, str]] = None,
        ready_timeout: float = 60.0,
        **flags: Any,
    ) -> _Spawn:
        """Spawns the sidecar: ``quarry supervise [supervisor flags] -- quarry serve
        [flags]`` (or ``quarry serve [flags]`` when ``supervised=False``), and waits for
        ``sidecar/ready``. ``flags`` map to command-line flags
        (``max_concurrency=8`` → ``--max-concurrency 8``, ``debug_methods=True`` →
        ``--debug-methods``); supervisor flags (``max_restarts``, ``max_rss_mb``, …) go
        to ``quarry supervise``."""
        return _Spawn(
            binary=binary,
            supervised=supervised,
            data_dir=data_dir,
            env=env,
            ready_timeout=ready_timeout,
            flags=flags,
        )

    @classmethod
    async def _start(
        cls,
        *,
        binary: Optional[PathLike],
        supervised: bool,
        data_dir: Optional[PathLike],
        env: Optional[Dict[str, str]],
        ready_timeout: float,
        flags: Dict[str, Any],
    ) -> "QuarryClient":
        exe = find_binary(binary)
        serve_flags = {k: v for k, v in flags.items() if k not in SUPERVISOR_FLAGS}
        sup_flags = {k: v for k, v in flags.items() if k in SUPERVISOR_FLAGS}
        if sup_flags and not supervised:
            raise ValueError(f"supervisor flags without supervised=True: {sorted(sup_flags)}")
        if data_dir is not None:
            serve_flags["data_dir"] = os.fspath(data_dir)
        serve = [exe, "serve", *_flags(serve_flags)]
        argv = [exe, "supervise", *_flags(sup_flags), "--", *serve] if supervised else serve
        child_env = dict(os.environ)
        child_env.update(env or {})
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=STREAM_LIMIT,
            env=child_env,
            start_new_session=True,
        )
        client = cls(proc, supervised)
        try:
            client.ready = await asyncio.wait_for(asyncio.shield(client._ready), ready_timeout)
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def pid(self) -> int:
        """Pid of the spawned process (the supervisor when supervised)."""
        return self._proc.pid

    async def close(self, timeout: float = 10.0) -> None:
        """Stops the sidecar: ``shutdown`` (it drains), then closes stdin, then
        SIGTERM and SIGKILL to its process group. Never leaves a zombie, also when the
        calling task is cancelled."""
        if self._closed:
            return
        self._closed = True
        try:
            await asyncio.shield(self._stop(timeout))
        finally:
            if self._proc.returncode is None:
                self._kill(signal.SIGKILL)
            for t in (self._reader, self._stderr):
                t.cancel()
            self._fail_all(ConnectionLost("the client was closed"))

    async def _stop(self, timeout: float) -> None:
        proc = self._proc
        if proc.returncode is None:
            try:
                await asyncio.wait_for(self._request("shutdown", None), timeout)
            except (QuarryError, asyncio.TimeoutError, OSError, ConnectionError):
                pass
            if proc.stdin is not None:
                try:
                    proc.stdin.close()
                except (OSError, RuntimeError):
                    pass
            for sig, wait in ((None, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
                if sig is not None:
                    self._kill(sig)
                try:
                    await asyncio.wait_for(proc.wait(), wait)
                    break
                except asyncio.TimeoutError:
                    continue
        try:
            await asyncio.wait_for(asyncio.gather(self._reader, self._stderr, return_exceptions=True), 2.0)
        except asyncio.TimeoutError:
            pass

    def _kill(self, sig: int) -> None:
        try:
            os.killpg(self._proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            try:
                self._proc.send_signal(sig)
            except ProcessLookupError:
                pass

    async def __aenter__(self) -> "QuarryClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------------ reading

    async def _read_stdout(self) -> None:
        assert self._proc.stdout is not None
        stdout = self._proc.stdout
        try:
            while True:
                try:
                    line = await stdout.readline()
                except (asyncio.LimitOverrunError, ValueError) as e:
                    log.error("quarry: a line from the sidecar exceeded %d bytes: %s", STREAM_LIMIT, e)
                    continue
                if not line:
                    break
                try:
                    msg = json.loads(line)
                except ValueError:
                    log.warning("quarry: ignoring a non-JSON line from the sidecar: %r", line[:200])
                    continue
                if isinstance(msg, list):
                    for m in msg:
                        self._dispatch(m)
                else:
                    self._dispatch(msg)
        finally:
            self._fail_all(ConnectionLost("the sidecar closed its output"))
            for s in (self._events, self._notifications, self._watch_events):
                s.close()
            if not self._ready.done():
                self._ready.set_exception(ConnectionLost("the sidecar exited before it was ready"))

    def _dispatch(self, msg: Any) -> None:
        if not isinstance(msg, dict):
            return
        method = msg.get("method")
        if method is None:
            fut = self._pending.pop(msg.get("id"), None) if isinstance(msg.get("id"), int) else None
            if fut is None or fut.done():
                return
            if "error" in msg and isinstance(msg["error"], dict):
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
        if method == "sidecar/ready":
            self.ready = params if isinstance(params, dict) else {}
            if not self._ready.done():
                self._ready.set_result(self.ready)
        if method == "supervisor/event" and isinstance(params, dict):
            self._events.publish(SupervisorEvent.from_json(params))
            return
        if method == "watch/event":
            self._watch_events.publish(params)
            return
        self._notifications.publish(Notification(method, params))

    async def _read_stderr(self) -> None:
        assert self._proc.stderr is not None
        stderr = self._proc.stderr
        while True:
            try:
                line = await stderr.readline()
            except (asyncio.LimitOverrunError, ValueError):
                continue
            if not line:
                return
            sidecar_log.info("%s", line.decode("utf-8", "replace").rstrip())

    def _fail_all(self, error: QuarryError) -> None:
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(error)

    # ------------------------------------------------------------------ writing

    async def _write(self, msg: Dict[str, Any]) -> None:
        stdin = self._proc.stdin
        if stdin is None or stdin.is_closing():
            raise ConnectionLost("the sidecar's input is closed")
        data = json.dumps(msg, separators=(",", ":")).encode() + b"\n"
        async with self._write_lock:
            stdin.write(data)
            try:
                await stdin.drain()
            except (ConnectionError, BrokenPipeError) as e:
                raise ConnectionLost(f"cannot write to the sidecar: {e}") from e

    async def notify(self, method: str, params: Any = None) -> None:
        """Sends a notification (no response)."""
        msg: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            msg["params"] = params
        await self._write(msg)

    async def _request(
        self,
        method: str,
        params: Any,
        meta: Optional[Dict[str, Any]] = None,
        on_progress: Optional[ProgressCallback] = None,
        client_timeout: Optional[float] = None,
    ) -> Any:
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
        self._pending[rid] = fut
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
            self._pending.pop(rid, None)
            self._progress.pop(rid, None)

    async def _cancel_quietly(self, rid: int) -> None:
        if self._pending.pop(rid, None) is None and self._proc.returncode is not None:
            return
        try:
            await self.notify("notifications/cancelled", {"requestId": rid})
        except QuarryError:
            pass

    async def call(
        self,
        method: str,
        params: Any = None,
        *,
        timeout: Optional[float] = None,
        priority: Optional[str] = None,
        idempotent: bool = False,
        on_progress: Optional[ProgressCallback] = None,
    ) -> Any:
        """Calls ``method`` and returns its result.

        ``timeout`` (seconds) is sent as ``_meta.timeoutMs`` (the sidecar answers
        :class:`QuarryTimeout`); the client also gives up a little later on its own.
        ``priority`` is ``"high"``, ``"normal"`` or ``"low"``. ``idempotent`` lets the
        supervisor send the call again to a restarted sidecar. ``on_progress`` receives
        :class:`Progress` updates. Cancelling the awaiting task sends
        ``notifications/cancelled``."""
        meta: Dict[str, Any] = {}
        if timeout is not None:
            meta["timeoutMs"] = max(1, int(timeout * 1000))
        if priority is not None:
            meta["priority"] = priority
        if idempotent:
            meta["idempotent"] = True
        grace = None if timeout is None else timeout + 2.0
        return await self._request(method, params, meta or None, on_progress, grace)

    # -------------------------------------------------------------- subscriptions

    def events(self) -> AsyncIterator[SupervisorEvent]:
        """Live ``supervisor/event`` notifications from now on (ends when the sidecar
        is gone)."""
        return self._events.subscribe()

    def notifications(self) -> AsyncIterator[Notification]:
        """Every other notification from now on (``sidecar/ready`` of each restart, ...)."""
        return self._notifications.subscribe()

    # ---------------------------------------------------------------- typed API

    async def ping(self) -> None:
        """Liveness probe."""
        await self.call("ping")

    async def health(self) -> Health:
        """The sidecar's health."""
        return Health.from_json(await self.call("health"))

    async def stats(self) -> Dict[str, Any]:
        """Counters and latency percentiles per method."""
        return await self.call("stats")  # type: ignore[no-any-return]

    async def status(self) -> Dict[str, Any]:
        """``supervisor/status`` (supervised only): state, pid, restarts, lastExit."""
        return await self.call("supervisor/status")  # type: ignore[no-any-return]

    async def collections(self) -> List[CollectionInfo]:
        """Every collection."""
        r = await self.call("collections/list")
        return [CollectionInfo.from_json(c) for c in r["collections"]]

    async def create_collection(self, name: str) -> bool:
        """Creates ``name``; False if it existed."""
        return bool((await self.call("collections/create", {"name": name}))["created"])

    async def delete_collection(self, name: str) -> bool:
        """Deletes ``name``; False if it did not exist."""
        return bool((await self.call("collections/delete", {"name": name}))["deleted"])

    async def ingest(
        self,
        path: PathLike,
        *,
        collection: Optional[str] = None,
        content: Optional[str] = None,
        metadata: Optional[Dict[str, Any]] = None,
        timeout: Optional[float] = None,
    ) -> IngestResult:
        """Indexes one file (or ``content`` under the name ``path``)."""
        params: Dict[str, Any] = {"path": os.fspath(path)}
        if collection is not None:
            params["collection"] = collection
        if content is not None:
            params["content"] = content
        if metadata is not None:
            params["metadata"] = metadata
        return IngestResult.from_json(
            await self.call("documents/ingest", params, timeout=timeout, idempotent=True)
        )

    async def ingest_dir(
        self,
        root: PathLike,
        *,
        collection: Optional[str] = None,
        include: Optional[Sequence[str]] = None,
        exclude: Optional[Sequence[str]] = None,
        on_progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = None,
    ) -> IngestDirResult:
        """Indexes every text file under ``root`` (idempotent, so replayed after a
        crash)."""
        params = _tree_params(root, collection, include, exclude)
        r = await self.call(
            "documents/ingestDir", params, timeout=timeout, idempotent=True, on_progress=on_progress
        )
        return IngestDirResult.from_json(r)

    async def search(
        self,
        query: str,
        *,
        collection: Optional[str] = None,
        limit: Optional[int] = None,
        path_prefix: Optional[PathLike] = None,
        languages: Optional[Sequence[str]] = None,
        timeout: Optional[float] = None,
    ) -> List[SearchHit]:
        """Ranked hits for ``query``."""
        params: Dict[str, Any] = {"query": query}
        if collection is not None:
            params["collection"] = collection
        if limit is not None:
            params["limit"] = limit
        filt: Dict[str, Any] = {}
        if path_prefix is not None:
            filt["pathPrefix"] = os.fspath(path_prefix)
        if languages:
            filt["languages"] = list(languages)
        if filt:
            params["filter"] = filt
        r = await self.call("search/query", params, timeout=timeout, idempotent=True)
        return [SearchHit.from_json(h) for h in r["hits"]]

    async def watch(
        self,
        root: PathLike,
        *,
        collection: Optional[str] = None,
        include: Optional[Sequence[str]] = None,
        exclude: Optional[Sequence[str]] = None,
        debounce_ms: Optional[int] = None,
        on_progress: Optional[ProgressCallback] = None,
    ) -> AsyncIterator[WatchEvent]:
        """Watches ``root``: reconciles it with the index, then yields a
        :class:`WatchEvent` after each change the index applied. Closing the iterator
        stops the watch — use ``async with contextlib.aclosing(q.watch(root)) as
        events: async for event in events: ...`` so that leaving the loop stops it at
        once; the root's deletion ends it too (the last event carries the error)."""
        events = self._watch_events.subscribe()
        params = _tree_params(root, collection, include, exclude)
        if debounce_ms is not None:
            params["debounceMs"] = debounce_ms
        try:
            started = await self.call("watch/start", params, on_progress=on_progress)
        except BaseException:
            events.close()
            raise
        watch_id = started["watchId"]
        try:
            async for raw in events:
                if not isinstance(raw, dict) or raw.get("watchId") != watch_id:
                    continue
                event = WatchEvent.from_json(raw)
                yield event
                if event.error and event.path == os.fspath(Path(root).resolve()) and event.kind == "deleted":
                    return
        finally:
            events.close()
            if not self._closed:
                try:
                    await asyncio.shield(self.call("watch/stop", {"watchId": watch_id}, timeout=5))
                except (QuarryError, asyncio.CancelledError):
                    pass

    async def watches(self) -> List[Dict[str, Any]]:
        """The running watches: ``[{watchId, root, collection}]``."""
        return list((await self.call("watch/list"))["watches"])

    async def delete(
        self,
        path: Optional[PathLike] = None,
        *,
        document_id: Optional[str] = None,
        collection: Optional[str] = None,
    ) -> int:
        """Deletes documents by path (a file or a folder) and/or id; returns how many."""
        params: Dict[str, Any] = {}
        if path is not None:
            params["path"] = os.fspath(path)
        if document_id is not None:
            params["documentId"] = document_id
        if collection is not None:
            params["collection"] = collection
        return int((await self.call("documents/delete", params))["deleted"])


__all__ = ["QuarryClient", "find_binary", "STREAM_LIMIT"]

if sys.version_info < (3, 10):  # pragma: no cover
    raise ImportError("quarry-client needs Python 3.10 or newer")
