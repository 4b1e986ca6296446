"""``QuarryClient.symbols``: definitions by name through the real binary, over stdio."""

from __future__ import annotations

import asyncio
from pathlib import Path

from quarry_client import QuarryClient, Symbol

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "symbols"


def test_symbols_by_name_kind_and_container(quarry_bin: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with QuarryClient.spawn(quarry_bin, data_dir=tmp_path, no_grpc=True) as q:
            r = await q.ingest_dir(FIXTURES)
            assert r.files == 9
            hits = await q.symbols("make_square")
            assert hits and all(isinstance(h, Symbol) for h in hits)
            assert hits[0].name == "make_square" and hits[0].score > 0.9
            structs = await q.symbols("Shape", kinds=["struct"])
            exact = sorted(Path(h.path).name for h in structs if h.name == "Shape")
            assert exact == ["shapes.go", "shapes.rs"]
            # C's `shape` matches ignoring case, after them.
            assert [h.name for h in structs] == ["Shape", "Shape", "shape"]
            [area, *_] = await q.symbols("Shape.area", languages=["python"])
            assert (area.kind, area.container, area.line) == ("method", "Shape", 9)
            assert area.signature == "def area(self):"

    asyncio.run(main())
