"""Result types of the engine methods (PROTOCOL.md §9), as dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple


@dataclass(frozen=True)
class DenseStatus:
    """A collection's embedding model and how far its chunks are embedded."""

    model: str
    dimension: int
    embedded: int
    pending: int

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "DenseStatus":
        return cls(
            model=d["model"],
            dimension=int(d["dimension"]),
            embedded=int(d["embedded"]),
            pending=int(d["pending"]),
        )


@dataclass(frozen=True)
class CollectionInfo:
    """One collection: ``points`` are chunks, ``documents`` are files; ``dense`` is
    ``None`` for a BM25-only collection."""

    name: str
    points: int
    documents: int
    dense: Optional[DenseStatus] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "CollectionInfo":
        dense = d.get("dense")
        return cls(
            name=d["name"],
            points=int(d["points"]),
            documents=int(d["documents"]),
            dense=DenseStatus.from_json(dense) if dense else None,
        )


@dataclass(frozen=True)
class IngestResult:
    """``documents/ingest``."""

    document_id: str
    path: str
    chunks: int
    unchanged: bool
    #: What was left out of a document indexed only in part (``None``: whole).
    partial: Optional[str] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "IngestResult":
        return cls(
            document_id=d["documentId"],
            path=d["path"],
            chunks=int(d["chunks"]),
            unchanged=bool(d["unchanged"]),
            partial=d.get("partial"),
        )


@dataclass(frozen=True)
class Skipped:
    """A file that was not indexed, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class IngestDirResult:
    """``documents/ingestDir``."""

    files: int
    chunks: int
    unchanged: int
    removed: int
    skipped: List[Skipped]
    elapsed_ms: int

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "IngestDirResult":
        return cls(
            files=int(d["files"]),
            chunks=int(d["chunks"]),
            unchanged=int(d["unchanged"]),
            removed=int(d.get("removed", 0)),
            skipped=[Skipped(path=s["path"], reason=s["reason"]) for s in d.get("skipped", [])],
            elapsed_ms=int(d["elapsedMs"]),
        )


@dataclass(frozen=True)
class Symbol:
    """One definition found by :meth:`QuarryClient.symbols`."""

    name: str
    #: LSP ``SymbolKind`` in camelCase (``function``, ``method``, ``class``, …), or
    #: ``trait``, ``type``, ``macro``.
    kind: str
    path: str
    line: int
    end_line: int
    language: str
    score: float
    #: Enclosing definitions, outermost first, joined by ``.``.
    container: Optional[str] = None
    signature: Optional[str] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Symbol":
        return cls(
            name=d["name"],
            kind=d["kind"],
            path=d["path"],
            line=int(d["line"]),
            end_line=int(d["endLine"]),
            language=d["language"],
            score=float(d["score"]),
            container=d.get("container"),
            signature=d.get("signature"),
        )


@dataclass(frozen=True)
class Location:
    """A place in a document a person can open: a PDF page, a heading path
    (``"Guide > Install"``), an EPUB chapter, a notebook cell (1-based)."""

    page: Optional[int] = None
    heading: Optional[str] = None
    chapter: Optional[str] = None
    cell: Optional[int] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Location":
        return cls(
            page=d.get("page"),
            heading=d.get("heading"),
            chapter=d.get("chapter"),
            cell=d.get("cell"),
        )


@dataclass(frozen=True)
class SearchHit:
    """One ranked chunk."""

    path: str
    score: float
    chunk_index: int
    start_line: int
    end_line: int
    snippet: str
    language: str
    snippet_line: Optional[int] = None
    document_id: Optional[str] = None
    #: The candidate lists that found it: ``"sparse"`` (BM25), ``"dense"`` or both.
    sources: Tuple[str, ...] = ()
    #: Where the chunk is in a document (PDF, HTML, DOCX, ODT, EPUB, notebook);
    #: ``None`` for plain text and code.
    location: Optional["Location"] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "SearchHit":
        return cls(
            path=d["path"],
            score=float(d["score"]),
            chunk_index=int(d["chunkIndex"]),
            start_line=int(d["startLine"]),
            end_line=int(d["endLine"]),
            snippet=d["snippet"],
            language=d["language"],
            snippet_line=d.get("snippetLine"),
            document_id=d.get("documentId"),
            sources=tuple(d.get("sources", ())),
            location=Location.from_json(d["location"]) if d.get("location") else None,
        )


@dataclass(frozen=True)
class Health:
    """``health``."""

    status: str
    uptime_ms: int
    in_flight: int
    queued: int
    rss_bytes: int
    version: str

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "Health":
        return cls(
            status=d["status"],
            uptime_ms=int(d["uptimeMs"]),
            in_flight=int(d["inFlight"]),
            queued=int(d["queued"]),
            rss_bytes=int(d["rssBytes"]),
            version=d["version"],
        )


@dataclass(frozen=True)
class Progress:
    """A ``notifications/progress`` update."""

    progress: float
    total: Optional[float] = None
    message: Optional[str] = None


@dataclass(frozen=True)
class SupervisorEvent:
    """A ``supervisor/event`` notification (PROTOCOL.md §10)."""

    event: str
    pid: Optional[int] = None
    exit_code: Optional[int] = None
    signal: Optional[int] = None
    attempt: Optional[int] = None
    delay_ms: Optional[int] = None
    reason: Optional[str] = None
    rss_bytes: Optional[int] = None
    raw: Dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "SupervisorEvent":
        return cls(
            event=d.get("event", ""),
            pid=d.get("pid"),
            exit_code=d.get("exitCode"),
            signal=d.get("signal"),
            attempt=d.get("attempt"),
            delay_ms=d.get("delayMs"),
            reason=d.get("reason"),
            rss_bytes=d.get("rssBytes"),
            raw=d,
        )


@dataclass(frozen=True)
class Notification:
    """Any other notification from the sidecar."""

    method: str
    params: Any


@dataclass(frozen=True)
class WatchEvent:
    """A ``watch/event`` notification: a change applied to the index."""

    watch_id: str
    path: str
    kind: str
    indexed: bool
    error: Optional[str] = None

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> "WatchEvent":
        return cls(
            watch_id=d["watchId"],
            path=d["path"],
            kind=d["kind"],
            indexed=bool(d.get("indexed", False)),
            error=d.get("error"),
        )


@dataclass(frozen=True)
class SyncResult:
    """What a ``sync`` did (GRPC.md §2): paths the server asked for, files written,
    documents deleted, manifest entries already held, files that failed (with why)."""

    needed: int
    indexed: int
    deleted: int
    unchanged: int
    failed: int
    elapsed_ms: int
    #: Per failed file: ``(path, why)``.
    errors: List[Tuple[str, str]]
    #: Bytes of content sent.
    sent_bytes: int
    #: Entries whose content the server refused before at that hash (binary, too
    #: large, empty): not sent again.
    skipped: int = 0


@dataclass(frozen=True)
class HealthEvent:
    """A change of a connection's health (:meth:`QuarryClient.health_events`)."""

    #: ``"ok"``, ``"degraded"`` or ``"lost"``.
    state: str
    #: The server's answer (``None`` when lost).
    health: Optional[Health]
    #: The serving process's pid (``None`` when lost).
    pid: Optional[int]
