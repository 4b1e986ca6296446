"""Documents (PDF, HTML, DOCX, ODT, EPUB, notebooks) through the real binary: hits carry
their ``Location``; a hostile file is reported in ``skipped``."""

from __future__ import annotations

import asyncio
from pathlib import Path

from quarry_client import Location, QuarryClient

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "documents"


def test_hits_carry_their_location(quarry_bin: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with QuarryClient.spawn(quarry_bin, data_dir=tmp_path, no_grpc=True) as q:
            r = await q.ingest_dir(FIXTURES)
            reasons = {Path(s.path).name: s.reason for s in r.skipped}
            assert "encrypted PDF" in reasons["encrypted.pdf"]
            assert reasons["truncated.epub"].startswith("partly indexed")
            [hit, *_] = await q.search("quartz lantern protocol", languages=["pdf"])
            assert Path(hit.path).name == "sample.pdf" and hit.language == "pdf"
            assert hit.location == Location(page=2, heading="Installing")
            [hit, *_] = await q.search("plum weight", languages=["notebook"])
            assert hit.location == Location(cell=3, heading="Loading data > Cleaning")
            [plain, *_] = await q.search("quartz lantern protocol", languages=["python"])
            assert Path(plain.path).name == "generate.py" and plain.location is None
            one = await q.ingest(FIXTURES / "truncated.epub", collection="one")
            assert one.chunks > 0 and one.partial and "damaged archive" in one.partial
            whole = await q.ingest(FIXTURES / "sample.epub", collection="one")
            assert whole.partial is None

    asyncio.run(main())
