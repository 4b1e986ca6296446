"""The client side of ``SyncIndex`` (GRPC.md §2): a manifest of SHA-256s, then only the
content the server asks for. Needs the ``grpc`` extra."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import grpc
import grpc.aio

from ._proto import quarry_pb2, quarry_pb2_grpc
from .errors import ConnectionLost
from .grpc_transport import metadata
from .process import PathLike
from .types import Progress, SyncResult


#: Bytes of paths per manifest message (the server takes at most 16 MiB a message).
MANIFEST_PART_BYTES = 4 * 1024 * 1024
#: Largest file sent: what fits one message with room for its path.
MAX_CONTENT_BYTES = 16 * 1024 * 1024 - 64 * 1024


def manifest(folder: Path, exclude: Sequence[str] = ()) -> Dict[str, str]:
    """``{absolute path: hex SHA-256}`` of every file under ``folder`` (hidden files and
    folders, and folders named in ``exclude``, skipped; symlinks not followed)."""
    out: Dict[str, str] = {}
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in exclude)
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
    exclude: Sequence[str] = (),
) -> SyncResult:
    """Runs one sync of ``folder`` on ``channel``."""
    root = Path(os.path.abspath(os.fspath(folder)))
    entries = await asyncio.get_running_loop().run_in_executor(None, manifest, root, exclude)
    stub = quarry_pb2_grpc.QuarryStub(channel)  # type: ignore[no-untyped-call]
    call = stub.SyncIndex(metadata=metadata(token), timeout=timeout)
    sent = 0
    errors: List[Tuple[str, str]] = []
    try:
        # A manifest over the message limit goes in parts (`more` on all but the last).
        parts: List[List[quarry_pb2.ManifestEntry]] = [[]]
        size = 0
        for p, h in entries.items():
            if size + len(p) > MANIFEST_PART_BYTES and parts[-1]:
                parts.append([])
                size = 0
            parts[-1].append(quarry_pb2.ManifestEntry(path=p, sha256=h))
            size += len(p) + 80
        for i, part in enumerate(parts):
            await call.write(
                quarry_pb2.SyncRequest(
                    manifest=quarry_pb2.Manifest(
                        collection=collection or "",
                        prefix=os.fspath(prefix) if prefix is not None else str(root),
                        entries=part,
                        more=i + 1 < len(parts),
                    )
                )
            )
        # So may the Need.
        needed: List[str] = []
        while True:
            msg = await call.read()
            if msg is grpc.aio.EOF or msg.WhichOneof("response") != "need":
                raise ConnectionLost("SyncIndex: the server did not answer the manifest with Need")
            needed.extend(msg.need.paths)
            if not msg.need.more:
                break

        async def send() -> None:
            nonlocal sent
            for path in needed:
                try:
                    if Path(path).stat().st_size > MAX_CONTENT_BYTES:
                        # One message could not carry it (and the engine would refuse
                        # it as too large): not sent, the server counts it failed.
                        errors.append((path, "larger than one gRPC message; not sent"))
                        continue
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
                        skipped=r.skipped,
                    )
        finally:
            sender.cancel()
    except grpc.aio.AioRpcError as e:
        raise ConnectionLost(f"SyncIndex: {e.code().name}: {e.details()}") from e
    finally:
        call.cancel()
