"""Asyncio client for the Quarry sidecar (JSON-RPC 2.0 over stdio).

    async with QuarryClient.spawn() as q:
        await q.ingest_dir("src/", on_progress=print)
        for hit in await q.search("parse command line arguments"):
            print(hit.path, hit.start_line, hit.score)
"""

from .client import STREAM_LIMIT, QuarryClient, find_binary
from .errors import (
    ERRORS_BY_KIND,
    ConnectionLost,
    DuplicateId,
    InternalError,
    InvalidParams,
    InvalidPath,
    InvalidRequest,
    MessageTooLarge,
    MethodNotFound,
    NotFound,
    Overloaded,
    ParseError,
    QuarryCancelled,
    QuarryError,
    QuarryTimeout,
    ShuttingDown,
    SidecarExited,
    SidecarUnavailable,
    StorageError,
    UnsupportedContent,
    error_from_response,
)
from .semantic import ModelPaths, model_paths
from .types import (
    CollectionInfo,
    DenseStatus,
    Health,
    HealthEvent,
    IngestDirResult,
    IngestResult,
    Notification,
    Progress,
    SearchHit,
    SyncResult,
    Skipped,
    SupervisorEvent,
    WatchEvent,
)

__all__ = [
    "STREAM_LIMIT",
    "QuarryClient",
    "find_binary",
    "ERRORS_BY_KIND",
    "ConnectionLost",
    "DuplicateId",
    "InternalError",
    "InvalidParams",
    "InvalidPath",
    "InvalidRequest",
    "MessageTooLarge",
    "MethodNotFound",
    "NotFound",
    "Overloaded",
    "ParseError",
    "QuarryCancelled",
    "QuarryError",
    "QuarryTimeout",
    "ShuttingDown",
    "SidecarExited",
    "SidecarUnavailable",
    "StorageError",
    "UnsupportedContent",
    "error_from_response",
    "CollectionInfo",
    "DenseStatus",
    "ModelPaths",
    "model_paths",
    "Health",
    "IngestDirResult",
    "IngestResult",
    "Notification",
    "Progress",
    "SearchHit",
    "Skipped",
    "SupervisorEvent",
    "WatchEvent",
]
