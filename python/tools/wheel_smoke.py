"""Smoke test of an installed wheel (run by scripts/test.sh with the wheel's own
interpreter): the engine is the bundled binary — no QUARRY_BIN, nothing on PATH — and it
spawns, ingests and searches; ``quarry-mcp`` is installed beside it."""

from __future__ import annotations

import asyncio
import os
import sysconfig
import tempfile
from pathlib import Path

from quarry_client import QuarryClient, find_binary


async def main() -> None:
    assert "QUARRY_BIN" not in os.environ
    scripts = Path(sysconfig.get_path("scripts"))
    binary = find_binary()
    assert Path(binary) == scripts / "quarry", binary
    assert (scripts / "quarry-mcp").is_file()
    with tempfile.TemporaryDirectory() as data:
        async with QuarryClient.spawn(data_dir=data) as q:
            await q.ingest("/wheel/lemur.txt", content="the lemur leaps between trees")
            hits = await q.search("lemur")
            assert [h.path for h in hits] == ["/wheel/lemur.txt"], hits
    print(f"wheel OK: {binary}")


if __name__ == "__main__":
    asyncio.run(main())
