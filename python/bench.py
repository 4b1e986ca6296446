#!/usr/bin/env python3
"""Python-side benchmark: calls/s and p50/p99 latency of `ping` and `search/query`,
sequential and 64 concurrent, over every transport of the client — stdio direct
(`quarry serve`), stdio supervised (`quarry supervise -- quarry serve`), gRPC on the
Unix socket and gRPC on loopback TCP (both to a `quarry daemon`) — then `sync` of the
standard library over gRPC, first run and no-change run.

    python python/bench.py [N]      (N calls per cell, default 3000; needs the grpc extra)
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Dict, List, Tuple

from quarry_client import QuarryClient, find_binary

CORPUS = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "corpus"
QUERIES = ["dedent", "split a string using shell-like syntax", "heappush", "rgb to hsv", "serde_json"]


def pct(xs: List[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round((len(xs) - 1) * q))] * 1e3


async def measure(n: int, concurrency: int, make: Callable[[int], Awaitable[object]]) -> Tuple[float, float, float]:
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


@contextlib.contextmanager
def daemon(data: str, run: str) -> Any:
    """A `quarry daemon` listening on its socket and on loopback TCP; yields its entry."""
    env = dict(os.environ, XDG_RUNTIME_DIR=run, RUST_LOG="warn")
    proc = subprocess.Popen(
        [find_binary(), "daemon", "--data-dir", data, "--grpc-listen", "127.0.0.1:0",
         "--allow-root", str(CORPUS)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
    )
    entry = Path(run) / "quarry" / "instances" / f"{proc.pid}.json"
    try:
        while True:
            try:
                yield json.loads(entry.read_text())
                break
            except (OSError, ValueError):
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.asynccontextmanager
async def clients(data: str, run: str) -> AsyncIterator[List[Tuple[str, QuarryClient]]]:
    async with QuarryClient.spawn(supervised=False, data_dir=data + "/a") as direct, \
            QuarryClient.spawn(supervised=True, data_dir=data + "/b") as supervised:
        with daemon(data + "/c", run) as entry:
            async with QuarryClient.connect("unix:" + entry["unix"], token=entry["token"]) as unix, \
                    QuarryClient.connect(entry["tcp"], token=entry["token"]) as tcp:
                yield [("stdio direct", direct), ("stdio supervised", supervised),
                       ("gRPC Unix socket", unix), ("gRPC loopback TCP", tcp)]


async def main(n: int) -> None:
    print("| transport | method | concurrency | calls/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as run:
        async with clients(data, run) as all_clients:
            for mode, q in all_clients:
                await q.ingest_dir(CORPUS)
                cells = [
                    ("ping", lambda i, q=q: q.call("ping")),
                    ("search/query", lambda i, q=q: q.search(QUERIES[i % len(QUERIES)], limit=10)),
                ]
                for name, make in cells:
                    await measure(200, 8, make)  # warm-up
                    for conc in (1, 64):
                        rate, p50, p99 = await measure(n, conc, make)
                        print(f"| {mode} | {name} | {conc} | {rate:,.0f} | {p50:.3f} | {p99:.3f} |")
            # sync of the standard library over gRPC: everything, then nothing.
            unix = dict(all_clients)["gRPC Unix socket"]
            stdlib = sysconfig.get_paths()["stdlib"]
            print("\n| `sync` of the stdlib (no site-packages) over gRPC (Unix socket) | seconds | needed | skipped | sent MB |\n|---|---|---|---|---|")
            for label in ("first run", "no change"):
                t = time.perf_counter()
                r = await unix.sync(stdlib, collection="stdlib", exclude=("site-packages", "__pycache__"))
                secs = time.perf_counter() - t
                print(f"| {label} | {secs:.2f} | {r.needed} | {r.skipped} | {r.sent_bytes / 1e6:.1f} |")


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 3000))
