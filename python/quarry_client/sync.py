"""The client side of ``SyncIndex`` (GRPC.md §2): a manifest of SHA-256s, then only the
content the server asks for. Needs the ``grpc`` extra."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import grpc
import grpc.aio

from ._proto import quarry_pb2, quarry_pb2_grpc
from .errors import ConnectionLost
from .grpc_transport import metadata
from .process import PathLike
from .types import Progress, SyncResult


def manifest(folder: Path) -> Dict[str, str]:
    """``{absolute path: hex SHA-256}`` of every file under ``folder`` (hidden files and
    folders skipped, symlinks not followed)."""
    out: Dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            if path.is_symlink() or not path.is_file():
                continue
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            out[str(path)] = h.hexdigest()
    return out


async def sync(
    channel: grpc.aio.Channel,
    token: Optional[str],
    folder: PathLike,
    *,
    collection: Optional[str],
    prefix: Optional[PathLike],
    on_progress: Optional[Callable[[Progress], None]],
    timeout: Optional[float],
) -> SyncResult:
    """Runs one sync of ``folder`` on ``channel``."""
    root = Path(os.path.abspath(os.fspath(folder)))
    entries = await asyncio.get_running_loop().run_in_executor(None, manifest, root)
    stub = quarry_pb2_grpc.QuarryStub(channel)  # type: ignore[no-untyped-call]
    call = stub.SyncIndex(metadata=metadata(token), timeout=timeout)
    sent = 0
    errors: List[Tuple[str, str]] = []
    try:
        await call.write(
            quarry_pb2.SyncRequest(
                manifest=quarry_pb2.Manifest(
                    collection=collection or "",
                    prefix=os.fspath(prefix) if prefix is not None else str(root),
                    entries=[quarry_pb2.ManifestEntry(path=p, sha256=h) for p, h in entries.items()],
                )
            )
        )
        first = await call.read()
        if first is grpc.aio.EOF or first.WhichOneof("response") != "need":
            raise ConnectionLost("SyncIndex: the server did not answer the manifest with Need")

        async def send() -> None:
            nonlocal sent
            for path in first.need.paths:
                try:
                    content = Path(path).read_bytes()
                except OSError:
                    continue  # gone meanwhile: the server counts it failed
                sent += len(content)
                await call.write(
                    quarry_pb2.SyncRequest(file=quarry_pb2.FileContent(path=path, content=content))
                )
            await call.write(quarry_pb2.SyncRequest(done=quarry_pb2.Done()))
            await call.done_writing()

        sender = asyncio.create_task(send())
        try:
            while True:
                msg = await call.read()
                if msg is grpc.aio.EOF:
                    raise ConnectionLost("SyncIndex ended without a result")
                kind = msg.WhichOneof("response")
                if kind == "ack" and not msg.ack.indexed:
                    errors.append((msg.ack.path, msg.ack.error))
                elif kind == "progress" and on_progress is not None:
                    p = msg.progress
                    on_progress(Progress(p.progress, p.total or None, p.message or None))
                elif kind == "result":
                    r = msg.result
                    await sender
                    return SyncResult(
                        needed=r.needed,
                        indexed=r.indexed,
                        deleted=r.deleted,
                        unchanged=r.unchanged,
                        failed=r.failed,
                        elapsed_ms=r.elapsed_ms,
                        errors=errors,
                        sent_bytes=sent,
                    )
        finally:
            sender.cancel()
    except grpc.aio.AioRpcError as e:
        raise ConnectionLost(f"SyncIndex: {e.code().name}: {e.details()}") from e
    finally:
        call.cancel()
