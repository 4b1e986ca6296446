"""``quarry-mcp``: an MCP server (the official ``mcp`` SDK, extra ``quarry-client[mcp]``)
whose tools index, search and watch folders with Quarry.

The engine is reached through :meth:`QuarryClient.auto` — a running Quarry of the data
folder found in the registry, else a supervised one spawned for this server — so two MCP
clients on one machine share one index. ``QUARRY_DATA_DIR`` chooses the data folder,
``QUARRY_BIN`` the binary. Run: ``quarry-mcp`` (stdio transport).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass, field
from typing import AsyncIterator, Dict, List, Optional

from mcp.server.fastmcp import Context, FastMCP

from .client import QuarryClient
from .types import Progress, SearchHit


@dataclass
class _State:
    """What the server holds for its lifetime: the client and the running watches."""

    client: QuarryClient
    #: Watched folder → its ``watchId``.
    watches: Dict[str, str] = field(default_factory=dict)


@contextlib.asynccontextmanager
async def _lifespan(_server: FastMCP) -> AsyncIterator[_State]:
    data_dir = os.environ.get("QUARRY_DATA_DIR") or None
    async with QuarryClient.auto(data_dir, binary=os.environ.get("QUARRY_BIN")) as client:
        state = _State(client)
        try:
            yield state
        finally:
            for watch_id in state.watches.values():
                with contextlib.suppress(Exception):
                    await client.call("watch/stop", {"watchId": watch_id}, timeout=5)


mcp = FastMCP(
    "quarry",
    instructions=(
        "Search the user's code and documents. Index a folder once with index_folder "
        "(or keep it current with watch_folder), then search with search."
    ),
    lifespan=_lifespan,
)


def _state(ctx: Context) -> _State:  # type: ignore[type-arg]
    state: _State = ctx.request_context.lifespan_context
    return state


def _hit_text(h: SearchHit) -> str:
    where = f"{h.path}:{h.start_line}-{h.end_line}"
    loc = h.location
    if loc is not None:
        parts = [
            f"page {loc.page}" if loc.page is not None else None,
            f"chapter {loc.chapter!r}" if loc.chapter else None,
            f"cell {loc.cell}" if loc.cell is not None else None,
            loc.heading,
        ]
        where += " (" + ", ".join(p for p in parts if p) + ")"
    snippet = (h.snippet or "").strip()
    return f"{where} (score {h.score:.3f})\n{snippet}"


@mcp.tool()
async def index_folder(
    path: str, ctx: Context, collection: Optional[str] = None  # type: ignore[type-arg]
) -> str:
    """Index every text file and document (PDF, HTML, DOCX, ODT, EPUB, notebook)
    under a folder (honouring .gitignore); files already
    indexed and unchanged are skipped, files gone from the folder are removed."""
    loop = asyncio.get_running_loop()

    def progress(p: Progress) -> None:
        loop.create_task(ctx.report_progress(p.progress, p.total, p.message))

    r = await _state(ctx).client.ingest_dir(path, collection=collection, on_progress=progress)
    return (
        f"Indexed {r.files} files under {path}: {r.unchanged} unchanged, "
        f"{r.removed} removed, {len(r.skipped)} skipped, {r.chunks} chunks written "
        f"in {r.elapsed_ms} ms."
    )


@mcp.tool()
async def search(
    query: str,
    ctx: Context,  # type: ignore[type-arg]
    collection: Optional[str] = None,
    path_prefix: Optional[str] = None,
    languages: Optional[List[str]] = None,
    limit: int = 10,
) -> str:
    """Ranked passages for a query (words, identifiers or a description), each as
    ``path:start-end`` with its text. Filter by a folder (``path_prefix``) or by
    languages (``python``, ``rust``, ``markdown``, ...)."""
    hits = await _state(ctx).client.search(
        query, collection=collection, path_prefix=path_prefix, languages=languages, limit=limit
    )
    if not hits:
        return f"No results for {query!r}."
    return "\n\n".join(_hit_text(h) for h in hits)


@mcp.tool()
async def find_symbol(
    name: str,
    ctx: Context,  # type: ignore[type-arg]
    kinds: Optional[List[str]] = None,
    collection: Optional[str] = None,
    limit: int = 10,
) -> str:
    """Where a function, class, method, struct, … is defined, by name: the exact
    name, a prefix, snake_case/camelCase parts, ``*`` globs, ``Class.method``, or a
    near miss. Each as ``path:line-endLine  kind  Container.name`` and its first line.
    ``kinds`` narrows it (``function``, ``method``, ``class``, ``struct``, ...)."""
    found = await _state(ctx).client.symbols(name, kinds=kinds, collection=collection, limit=limit)
    if not found:
        return f"No definition matches {name!r}."
    lines = []
    for s in found:
        qualified = f"{s.container}.{s.name}" if s.container else s.name
        lines.append(f"{s.path}:{s.line}-{s.end_line}  {s.kind}  {qualified}\n    {s.signature or ''}")
    return "\n".join(lines)


@mcp.tool()
async def watch_folder(
    path: str, ctx: Context, collection: Optional[str] = None  # type: ignore[type-arg]
) -> str:
    """Index a folder now and keep its index current as files change, for as long as
    this server runs."""
    state = _state(ctx)
    key = os.path.abspath(path)
    if key in state.watches:
        return f"{key} is already watched."
    params: Dict[str, object] = {"root": key}
    if collection is not None:
        params["collection"] = collection
    started = await state.client.call("watch/start", params)
    state.watches[key] = started["watchId"]
    return f"Watching {started.get('root', key)}: it is indexed and stays current."


@mcp.tool()
async def list_collections(ctx: Context) -> str:  # type: ignore[type-arg]
    """The collections of the index with their document and chunk counts."""
    cols = await _state(ctx).client.collections()
    if not cols:
        return "The index is empty."
    return "\n".join(f"{c.name}: {c.documents} documents, {c.points} chunks" for c in cols)


@mcp.tool()
async def status(ctx: Context) -> str:  # type: ignore[type-arg]
    """The engine's status: how it is reached, its health, and the watched folders."""
    state = _state(ctx)
    h = await state.client.health()
    watched = sorted(state.watches)
    lines = [
        f"engine: pid {state.client.pid} over {state.client.transport}, {h.status}, "
        f"version {h.version}, {h.in_flight} running, {h.queued} queued",
    ]
    raw = await state.client.call("health")
    if raw.get("role"):
        lines.append(f"data folder role: {raw['role']} (owner pid {raw.get('ownerPid')})")
    lines.append("watched: " + (", ".join(watched) if watched else "nothing"))
    return "\n".join(lines)


def main() -> None:
    """The ``quarry-mcp`` console script: serve MCP over stdio."""
    mcp.run()


if __name__ == "__main__":
    main()
