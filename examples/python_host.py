#!/usr/bin/env python3
"""The main job, end to end: spawn the supervised sidecar, ingest ROOT with a live
progress bar fed by progress notifications, then print ranked hits per query.

    python examples/python_host.py [ROOT] [QUERY ...]

ROOT defaults to this interpreter's standard library (without site-packages).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import sysconfig
import time

from quarry_client import Progress, QuarryClient

DEFAULT_QUERIES = [
    "parse command line arguments",
    "split a string using shell-like syntax",
    "ThreadPoolExecutor",
    "compare sequences and compute differences",
]


def bar(p: Progress, started: float) -> None:
    total = p.total or 0
    width = 30
    done = int(width * p.progress / total) if total else 0
    sys.stderr.write(
        f"\r[{'#' * done}{'.' * (width - done)}] {p.message or int(p.progress)}"
        f"  {time.monotonic() - started:5.1f} s"
    )
    sys.stderr.flush()


async def main(argv: list[str]) -> int:
    stdlib = sysconfig.get_paths()["stdlib"]
    root = argv[1] if len(argv) > 1 else stdlib
    queries = argv[2:] or DEFAULT_QUERIES
    exclude = ["site-packages/", "__pycache__/"] if os.path.realpath(root) == os.path.realpath(stdlib) else []
    async with QuarryClient.spawn(data_dir=os.environ.get("QUARRY_DATA_DIR")) as q:
        print(f"sidecar ready: quarry {q.ready.get('version')} (pid {q.ready.get('pid')}), supervised")
        started = time.monotonic()
        r = await q.ingest_dir(root, exclude=exclude, on_progress=lambda p: bar(p, started))
        sys.stderr.write("\n")
        print(
            f"indexed {root}: {r.files} files ({r.unchanged} unchanged), {r.chunks} chunks written, "
            f"{r.removed} removed, {len(r.skipped)} skipped, {r.elapsed_ms / 1000:.2f} s"
        )
        for query in queries:
            t = time.monotonic()
            hits = await q.search(query, limit=5)
            print(f"\n{query!r}  ({(time.monotonic() - t) * 1000:.1f} ms)")
            for h in hits:
                lines = [l.strip() for l in h.snippet.splitlines() if l.strip()]
                best = lines[len(lines) // 2] if lines else ""  # the snippet centres on it
                print(f"  {h.path}:{h.start_line}-{h.end_line}  {h.score:6.2f}  {best[:90]}")
    return 0


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(asyncio.run(main(sys.argv)))
