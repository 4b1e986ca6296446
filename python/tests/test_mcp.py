"""``quarry-mcp`` end to end with the MCP SDK's own client (``stdio_client`` +
``ClientSession``) against the real binary: tools listed and called, progress received,
errors returned as tool errors, two servers sharing one engine, nothing left behind."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest

mcp = pytest.importorskip("mcp")
from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "corpus"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def params(tmp_path: Path) -> StdioServerParameters:
    env = dict(os.environ)
    env.update(
        QUARRY_DATA_DIR=str(tmp_path / "data"),
        XDG_RUNTIME_DIR=str(tmp_path / "run"),
        RUST_LOG="warn",
    )
    (tmp_path / "run").mkdir(exist_ok=True)
    return StdioServerParameters(command=sys.executable, args=["-m", "quarry_client.mcp_server"], env=env)


def text(result: Any) -> str:
    return "\n".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def engines(data_dir: Path) -> List[int]:
    """Pids of quarry processes serving ``data_dir``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"quarry") and str(data_dir).encode() in environ + b"\0".join(cmdline):
            stat = (entry / "stat").read_text()
            if not stat.rsplit(") ", 1)[1].startswith("Z"):
                found.append(int(entry.name))
    return found


def test_the_mcp_server_end_to_end(tmp_path: Path) -> None:
    async def main() -> None:
        async with stdio_client(params(tmp_path)) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {t.name for t in (await session.list_tools()).tools}
                assert tools == {
                    "index_folder",
                    "search",
                    "find_symbol",
                    "watch_folder",
                    "list_collections",
                    "status",
                }

                progress: List[Tuple[float, Any]] = []

                async def on_progress(done: float, total: Any, message: Any) -> None:
                    progress.append((done, total))

                r = await session.call_tool("index_folder", {"path": str(CORPUS)}, progress_callback=on_progress)
                assert not r.isError, text(r)
                assert text(r).startswith("Indexed "), text(r)
                assert progress, "no MCP progress notification"
                assert engines(tmp_path / "data"), "the engine is not found by its data folder"

                r = await session.call_tool("search", {"query": "split a string using shell-like syntax"})
                assert not r.isError, text(r)
                first = text(r).splitlines()[0]
                assert "shlex.py:" in first and "-" in first.split(":")[-1], first

                r = await session.call_tool("find_symbol", {"name": "split", "kinds": ["function"]})
                assert not r.isError, text(r)
                first = text(r).splitlines()[0]
                assert "shlex.py:305-" in first and "function" in first, first

                r = await session.call_tool("search", {"query": "wrap", "languages": ["markdown"], "limit": 3})
                assert not r.isError
                assert ".py:" not in text(r), text(r)

                # Errors come back as tool errors, the session goes on.
                r = await session.call_tool("search", {"query": "x", "limit": 0})
                assert r.isError, text(r)
                r = await session.call_tool("index_folder", {"path": str(tmp_path / "missing")})
                assert r.isError, text(r)

                watched = tmp_path / "watched"
                watched.mkdir()
                (watched / "a.txt").write_text("the axolotl regrows its limbs\n")
                r = await session.call_tool("watch_folder", {"path": str(watched)})
                assert not r.isError, text(r)
                (watched / "b.txt").write_text("the pangolin rolls into a ball\n")
                end = time.monotonic() + 30
                while True:
                    r = await session.call_tool("search", {"query": "pangolin"})
                    if "b.txt" in text(r):
                        break
                    assert time.monotonic() < end, "the watched change was never indexed"
                    await asyncio.sleep(0.1)

                r = await session.call_tool("list_collections", {})
                assert "default:" in text(r), text(r)
                r = await session.call_tool("status", {})
                assert "over stdio" in text(r) and "role: owner" in text(r), text(r)

                # A second MCP server on the same machine and folder shares the engine.
                async with stdio_client(params(tmp_path)) as (read2, write2):
                    async with ClientSession(read2, write2) as second:
                        await second.initialize()
                        r = await second.call_tool("status", {})
                        assert "over grpc" in text(r), text(r)
                        r = await second.call_tool("search", {"query": "axolotl"})
                        assert "a.txt" in text(r), text(r)
        # The session closed: no engine of this folder is left.
        end = time.monotonic() + 15
        while engines(tmp_path / "data"):
            assert time.monotonic() < end, f"left behind: {engines(tmp_path / 'data')}"
            await asyncio.sleep(0.05)

    run(main())
