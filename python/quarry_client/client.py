"""The typed API: :class:`QuarryClient` spawns ``quarry supervise -- quarry serve`` (or
``quarry serve``) through :mod:`.process` and calls Quarry's methods over a
:class:`~.connection.Connection` on its pipes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import os
import signal
import sys
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Optional, Sequence, Union

from . import process
from .connection import STREAM_LIMIT, Connection, Subscribers
from .errors import ConnectionLost, QuarryError
from .process import PathLike, find_binary
from .semantic import model_paths as semantic_model_paths
from .types import (
    HealthEvent,
    SyncResult,
    CollectionInfo,
    Health,
    IngestDirResult,
    IngestResult,
    Notification,
    Progress,
    SearchHit,
    SupervisorEvent,
    Symbol,
    WatchEvent,
)

log = logging.getLogger("quarry")
sidecar_log = logging.getLogger("quarry.sidecar")

ProgressCallback = Callable[[Progress], None]

#: Methods that only read: over gRPC, sent again on a new session when the old one was
#: lost mid-call.
READ_ONLY = frozenset(
    {"ping", "health", "stats", "search/query", "search/symbols", "collections/list", "watch/list"}
)


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


class _Opening:
    """``QuarryClient.spawn(...)``, ``connect(...)``, ``discover(...)``, ``auto(...)``: an
    async context manager (closing the client on exit), or an awaitable."""

    def __init__(self, open: Callable[[], Awaitable["QuarryClient"]]) -> None:
        self._open = open
        self._client: Optional[QuarryClient] = None

    async def _start(self) -> "QuarryClient":
        self._client = await self._open()
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

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: Any,
        *,
        proc: Optional[asyncio.subprocess.Process] = None,
        session: Any = None,
        supervised: bool = False,
        max_line_bytes: int = STREAM_LIMIT,
    ) -> None:
        self._proc = proc
        self._session = session
        self.supervised = supervised
        #: ``"stdio"`` (a child's pipes) or ``"grpc"`` (a ``Session`` on a channel).
        self.transport = "stdio" if proc is not None else "grpc"
        self._events = Subscribers()
        self._notifications = Subscribers()
        self._watch_events = Subscribers()
        self._ready: "asyncio.Future[Dict[str, Any]]" = asyncio.get_running_loop().create_future()
        self._closed = False
        self._max_line = max_line_bytes
        #: Over gRPC: opens a new session (set by :meth:`connect` / :meth:`discover`).
        self._reopen: Optional[Callable[[], Awaitable[Any]]] = None
        self._reconnect_lock = asyncio.Lock()
        #: How long a lost gRPC session is retried before calls fail, seconds.
        self.reconnect_timeout = 30.0
        self._generation = 0
        self._conn = self._connection(reader, writer)
        self._stderr: Optional["asyncio.Task[None]"] = (
            asyncio.create_task(self._read_stderr()) if proc is not None else None
        )
        #: The last ``sidecar/ready`` params.
        self.ready: Dict[str, Any] = {}

    def _connection(self, reader: asyncio.StreamReader, writer: Any) -> Connection:
        """A started connection whose notifications count only while it is current."""
        self._generation += 1
        generation = self._generation

        def on_notification(method: str, params: Any) -> None:
            if generation == self._generation:
                self._notification(method, params)

        conn = Connection(reader, writer, max_line_bytes=self._max_line, on_notification=on_notification)
        conn.start()
        return conn

    async def _reconnect(self) -> None:
        """Over gRPC, after the session was lost (the server restarted, a new owner took
        the folder): a new session, retried with jittered exponential backoff (50 ms
        doubling to 2 s) for up to :attr:`reconnect_timeout` seconds.

        Raises :class:`ConnectionLost` when no session could be opened in time."""
        async with self._reconnect_lock:
            if not self._conn.closed or self._closed or self._reopen is None:
                return
            loop = asyncio.get_running_loop()
            end = loop.time() + self.reconnect_timeout
            delay = 0.05
            while True:
                session: Any = None
                try:
                    session = await self._reopen()
                    self._events, self._notifications, self._watch_events = (
                        Subscribers(),
                        Subscribers(),
                        Subscribers(),
                    )
                    self._ready = loop.create_future()
                    conn = self._connection(session.reader, session.writer)
                    self.ready = await asyncio.wait_for(asyncio.shield(self._ready), 10.0)
                    old, self._session, self._conn = self._session, session, conn
                    log.info("quarry: reconnected (pid %s)", self.ready.get("pid"))
                    if old is not None:
                        with contextlib.suppress(Exception):
                            await old.close()
                    return
                except Exception as e:
                    if session is not None:
                        with contextlib.suppress(Exception):
                            await session.close()
                    if loop.time() + delay > end:
                        raise ConnectionLost(f"cannot reconnect: {e}") from e
                    await asyncio.sleep(delay * random.uniform(0.5, 1.5))
                    delay = min(delay * 2, 2.0)

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
        max_line_bytes: int = STREAM_LIMIT,
        semantic: bool = False,
        **flags: Any,
    ) -> _Opening:
        """Spawns the sidecar: ``quarry supervise [supervisor flags] -- quarry serve
        [flags]`` (or ``quarry serve [flags]`` when ``supervised=False``), and waits for
        ``sidecar/ready``. ``flags`` map to command-line flags
        (``max_concurrency=8`` → ``--max-concurrency 8``, ``debug_methods=True`` →
        ``--debug-methods``); supervisor flags (``max_restarts``, ``max_rss_mb``, …) go
        to ``quarry supervise``. A response line longer than ``max_line_bytes`` fails
        its call with :class:`MessageTooLarge` and the connection goes on.

        ``semantic=True`` turns on semantic search with the model installed by the
        extra ``quarry-client[semantic]`` (see :func:`quarry_client.semantic.model_paths`;
        :class:`FileNotFoundError` names what is missing)."""
        if semantic:
            env = {**semantic_model_paths().env(), **(env or {})}
        return _Opening(
            lambda: cls._start(
                binary=binary,
                supervised=supervised,
                data_dir=data_dir,
                env=env,
                ready_timeout=ready_timeout,
                max_line_bytes=max_line_bytes,
                flags=flags,
            )
        )

    @classmethod
    def connect(
        cls,
        target: str,
        *,
        token: Optional[str] = None,
        tls: "Union[None, bool, bytes, str, Path]" = None,
        server_name: Optional[str] = None,
        ready_timeout: float = 30.0,
        max_line_bytes: int = STREAM_LIMIT,
    ) -> _Opening:
        """Connects over gRPC (the ``grpc`` extra) to a running Quarry — a ``quarry
        daemon``, or the local endpoint of another host's ``quarry serve`` — at
        ``target``: ``unix:/path/to.sock`` or ``host:port``. ``token`` is the bearer
        token (GRPC.md §3); ``tls`` is ``True`` (system roots) or the CA that signed the
        server's certificate (PEM bytes or a file), ``server_name`` the name to check.
        The typed API is the same as over :meth:`spawn`."""
        return _Opening(
            lambda: cls._connect(target, token, tls, server_name, ready_timeout, max_line_bytes)
        )

    @classmethod
    async def _connect(
        cls,
        target: str,
        token: Optional[str],
        tls: "Union[None, bool, bytes, str, Path]",
        server_name: Optional[str],
        ready_timeout: float,
        max_line_bytes: int,
    ) -> "QuarryClient":
        from . import grpc_transport

        def open_session() -> Any:
            chan = grpc_transport.channel(target, tls=tls, server_name=server_name)
            return grpc_transport.Session(chan, token, max_line_bytes)

        session = open_session()
        client = cls(session.reader, session.writer, session=session, max_line_bytes=max_line_bytes)

        async def reopen() -> Any:
            return open_session()

        client._reopen = reopen
        try:
            client.ready = await asyncio.wait_for(asyncio.shield(client._ready), ready_timeout)
        except BaseException as e:
            error = session.error
            await client.close()
            if error is not None and not isinstance(e, asyncio.CancelledError):
                raise ConnectionLost(f"{target}: {error.code().name}: {error.details()}") from e
            raise
        return client

    @classmethod
    def discover(cls, data_dir: Optional[PathLike] = None, **connect: Any) -> _Opening:
        """Connects to a live Quarry found in this user's registry (GRPC.md §5; stale
        entries skipped) — the owner of ``data_dir`` when given — with its token.
        Raises :class:`FileNotFoundError` when there is none."""

        async def open() -> "QuarryClient":
            from . import registry

            found = registry.find(data_dir)
            if found is None:
                where = f" for {data_dir}" if data_dir is not None else ""
                raise FileNotFoundError(f"no live Quarry in {registry.runtime_dir()}{where}")
            limit = int(connect.get("max_line_bytes", STREAM_LIMIT))
            client = await cls._connect(
                "unix:" + found.unix,
                found.token,
                None,
                None,
                float(connect.get("ready_timeout", 30.0)),
                limit,
            )

            async def reopen() -> Any:
                # The folder's Quarry may be another process now: look again.
                from . import grpc_transport

                again = registry.find(data_dir)
                if again is None:
                    raise FileNotFoundError("no live Quarry in the registry")
                chan = grpc_transport.channel("unix:" + again.unix)
                return grpc_transport.Session(chan, again.token, limit)

            client._reopen = reopen
            return client

        return _Opening(open)

    @classmethod
    def auto(cls, data_dir: Optional[PathLike] = None, **spawn: Any) -> _Opening:
        """A running Quarry of ``data_dir`` found in the registry (over gRPC), else a
        spawned one (over stdio; ``spawn`` are :meth:`spawn`'s arguments). Either way
        the same typed API; two callers on one machine share one index."""

        async def open() -> "QuarryClient":
            try:
                return await cls.discover(data_dir)._start()
            except (FileNotFoundError, ImportError, ConnectionLost):
                return await cls.spawn(data_dir=data_dir, **spawn)._start()

        return _Opening(open)

    @classmethod
    async def _start(
        cls,
        *,
        binary: Optional[PathLike],
        supervised: bool,
        data_dir: Optional[PathLike],
        env: Optional[Dict[str, str]],
        ready_timeout: float,
        max_line_bytes: int,
        flags: Dict[str, Any],
    ) -> "QuarryClient":
        argv = process.command_line(find_binary(binary), supervised, data_dir, flags)
        proc = await process.spawn(argv, env)
        assert proc.stdout is not None and proc.stdin is not None
        client = cls(
            proc.stdout, proc.stdin, proc=proc, supervised=supervised, max_line_bytes=max_line_bytes
        )
        try:
            client.ready = await asyncio.wait_for(asyncio.shield(client._ready), ready_timeout)
        except BaseException:
            await client.close()
            raise
        return client

    @property
    def pid(self) -> int:
        """Pid of the spawned process (the supervisor when supervised); over gRPC, the
        serving process's (from its ``sidecar/ready``)."""
        if self._proc is not None:
            return self._proc.pid
        return int(self.ready.get("pid", 0))

    async def close(self, timeout: float = 10.0) -> None:
        """Stops the sidecar: ``shutdown`` (it drains), then closes stdin, then
        SIGTERM and SIGKILL to its process group. Never leaves a zombie, also when the
        calling task is cancelled."""
        if self._closed:
            return
        self._closed = True
        if self._proc is None:
            # Over gRPC the server is not ours: end the session, keep the server.
            self._conn.abort(ConnectionLost("the client was closed"))
            await asyncio.shield(self._session.close())
            return
        try:
            await asyncio.shield(self._stop(timeout))
        finally:
            if self._proc.returncode is None:
                process.kill_group(self._proc, signal.SIGKILL)
            if self._stderr is not None:
                self._stderr.cancel()
            self._conn.abort(ConnectionLost("the client was closed"))

    async def _stop(self, timeout: float) -> None:
        assert self._proc is not None
        await process.stop(self._proc, lambda: self._conn.request("shutdown", None), timeout)
        await self._conn.wait_closed(2.0)
        if self._stderr is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._stderr), 2.0)
            except (asyncio.TimeoutError, Exception):
                pass

    async def __aenter__(self) -> "QuarryClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # ------------------------------------------------------------------ reading

    def _notification(self, method: str, params: Any) -> None:
        if method == "$/closed":
            for s in (self._events, self._notifications, self._watch_events):
                s.close()
            if not self._ready.done():
                self._ready.set_exception(ConnectionLost("the sidecar exited before it was ready"))
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
        assert self._proc is not None and self._proc.stderr is not None
        stderr = self._proc.stderr
        while True:
            try:
                line = await stderr.readline()
            except (asyncio.LimitOverrunError, ValueError):
                continue
            if not line:
                return
            sidecar_log.info("%s", line.decode("utf-8", "replace").rstrip())

    # ------------------------------------------------------------------ calling

    async def notify(self, method: str, params: Any = None) -> None:
        """Sends a notification (no response)."""
        await self._conn.notify(method, params)

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
        retried = False
        while True:
            if self._session is not None and self._conn.closed and not self._closed:
                await self._reconnect()
            try:
                return await self._conn.request(method, params, meta or None, on_progress, grace)
            except ConnectionLost:
                # Over gRPC a read-only call is sent once more on a new session; others
                # may have been applied, so they fail (GRPC.md §6's rule, from the client).
                if self._session is None or self._closed or retried or method not in READ_ONLY:
                    raise
                retried = True

    # -------------------------------------------------------------- subscriptions

    def events(self) -> AsyncIterator[SupervisorEvent]:
        """Live ``supervisor/event`` notifications from now on (ends when the sidecar
        is gone)."""
        return self._events.subscribe()

    def notifications(self) -> AsyncIterator[Notification]:
        """Every other notification from now on (``sidecar/ready`` of each restart, ...)."""
        return self._notifications.subscribe()

    async def health_events(self, interval: float = 1.0) -> AsyncIterator["HealthEvent"]:
        """The connection's health as it changes, polled every ``interval`` seconds: a
        :class:`HealthEvent` first, then one on every change of ``state`` — ``"ok"`` /
        ``"degraded"`` (the server's ``health.status``), ``"lost"`` (no answer; over
        gRPC the session is being reopened), and back. Ends when the client closes."""
        last: Optional[str] = None
        while not self._closed:
            if self._session is not None and self._conn.closed and last != "lost":
                # Said at once; the next poll waits for the session to be reopened.
                last = "lost"
                yield HealthEvent("lost", None, None)
            health: Optional[Health] = None
            try:
                health = Health.from_json(await self.call("health", timeout=max(interval, 1.0)))
                state = health.status
            except QuarryError:
                state = "lost"
            if state != last:
                last = state
                yield HealthEvent(state, health, self.pid if health is not None else None)
            await asyncio.sleep(interval)

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
        wait_for_embeddings: bool = False,
    ) -> IngestDirResult:
        """Indexes every text file under ``root`` (idempotent, so replayed after a
        crash). With ``wait_for_embeddings``, returns only once every chunk of the
        collection has its dense vector (the embedding is reported as progress)."""
        params = _tree_params(root, collection, include, exclude)
        if wait_for_embeddings:
            params["waitForEmbeddings"] = True
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
        mode: Optional[str] = None,
    ) -> List[SearchHit]:
        """Ranked hits for ``query``. ``mode`` is ``"hybrid"``, ``"sparse"`` or
        ``"dense"`` (default: hybrid when the collection has dense vectors, else
        sparse)."""
        params: Dict[str, Any] = {"query": query}
        if mode is not None:
            params["mode"] = mode
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

    async def symbols(
        self,
        query: str,
        *,
        collection: Optional[str] = None,
        limit: Optional[int] = None,
        kinds: Optional[Sequence[str]] = None,
        languages: Optional[Sequence[str]] = None,
        path_prefix: Optional[PathLike] = None,
        timeout: Optional[float] = None,
    ) -> List[Symbol]:
        """Definitions named like ``query`` (a name, a prefix, sub-words, a ``*`` glob,
        or ``Container.name``), most relevant first (``search/symbols``)."""
        params: Dict[str, Any] = {"query": query}
        if collection is not None:
            params["collection"] = collection
        if limit is not None:
            params["limit"] = limit
        if kinds:
            params["kinds"] = list(kinds)
        if languages:
            params["languages"] = list(languages)
        if path_prefix is not None:
            params["filter"] = {"pathPrefix": os.fspath(path_prefix)}
        r = await self.call("search/symbols", params, timeout=timeout, idempotent=True)
        return [Symbol.from_json(s) for s in r["symbols"]]

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
        # The server names the root as it watches it (absolute, not resolved through
        # symlinks); its deletion is the watch's last event.
        watched_root = started.get("root") or os.path.abspath(os.fspath(root))
        try:
            async for raw in events:
                if not isinstance(raw, dict) or raw.get("watchId") != watch_id:
                    continue
                event = WatchEvent.from_json(raw)
                yield event
                if event.error and event.kind == "deleted" and event.path == watched_root:
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

    async def sync(
        self,
        folder: PathLike,
        *,
        collection: Optional[str] = None,
        prefix: Optional[PathLike] = None,
        exclude: Sequence[str] = (),
        on_progress: Optional[ProgressCallback] = None,
        timeout: Optional[float] = None,
    ) -> "SyncResult":
        """Brings ``collection`` up to date with ``folder`` by GRPC.md §2's
        ``SyncIndex`` (gRPC connections only): a SHA-256 manifest of every file under
        it (hidden ones, and folders named in ``exclude``, skipped) goes first, then only the content the server asks for;
        documents under ``prefix`` (default: the folder) that the folder no longer has
        are deleted. A second sync with nothing changed sends no content. For an engine
        that does not share this machine's file system."""
        if self._session is None:
            raise NotImplementedError(
                "sync needs a gRPC connection (QuarryClient.connect or discover); "
                "a spawned engine shares the file system: use ingest_dir"
            )
        from .sync import sync

        return await sync(
            self._session.channel,
            self._session.token,
            folder,
            collection=collection,
            prefix=prefix,
            on_progress=on_progress,
            timeout=timeout,
            exclude=exclude,
        )

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
