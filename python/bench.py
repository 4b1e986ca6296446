#!/usr/bin/env python3
"""Python-side benchmark: calls/s and p50/p99 latency of `ping` and `search/query`,
sequential and 64 concurrent, direct (`quarry serve`) and supervised
(`quarry supervise -- quarry serve`).

    python python/bench.py [N]      (N calls per cell, default 3000)
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable, List

from quarry_client import QuarryClient

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "corpus"
QUERIES = ["dedent", "split a string using shell-like syntax", "heappush", "rgb to hsv", "serde_json"]


def pct(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round((len(xs) - 1) * q))] * 1e3


async def measure(n: int, concurrency: int, make: Callable[[int], Awaitable[object]]) -> tuple:
    lat: List[float] = []
    sem = asyncio.Semaphore(concurrency)

    async def one(i: int) -> None:
        async with sem:
            t = time.perf_counter()
            await make(i)
            lat.append(time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(n)))
    wall = time.perf_counter() - t0
    return n / wall, pct(lat, 0.5), pct(lat, 0.99)


async def main(n: int) -> None:
    print(f"| mode | method | concurrency | calls/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as data:
        for supervised in (False, True):
            async with QuarryClient.spawn(supervised=supervised, data_dir=data) as q:
                await q.ingest_dir(CORPUS)
                cells = [
                    ("ping", lambda i: q.call("ping")),
                    ("search/query", lambda i: q.search(QUERIES[i % len(QUERIES)], limit=10)),
                ]
                for name, make in cells:
                    await measure(200, 8, make)  # warm-up
                    for conc in (1, 64):
                        rate, p50, p99 = await measure(n, conc, make)
                        mode = "supervised" if supervised else "direct"
                        print(f"| {mode} | {name} | {conc} | {rate:,.0f} | {p50:.3f} | {p99:.3f} |")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
