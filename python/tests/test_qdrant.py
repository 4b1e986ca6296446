"""The Python client on a Qdrant server (``qdrant_url=…`` → ``--qdrant-url``): ingest and
search through a real server, and the typed error while the server is down. The server
is ``$QUARRY_TEST_QDRANT`` (``scripts/test.sh`` sets it when ``../shared/bin/qdrant-server``
exists); without it these tests are skipped, saying why."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from quarry_client import QuarryClient, StorageError

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "corpus"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(http: int, grpc: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{http}/readyz", timeout=2) as r:
            if r.status != 200:
                return False
        with socket.create_connection(("127.0.0.1", grpc), timeout=2):
            return True
    except OSError:
        return False


@pytest.fixture()
def qdrant() -> Iterator[Tuple[str, subprocess.Popen[bytes]]]:
    binary = os.environ.get("QUARRY_TEST_QDRANT")
    if not binary or not Path(binary).exists():
        pytest.skip("no Qdrant server: set QUARRY_TEST_QDRANT (scripts/test.sh does when ../shared/bin/qdrant-server exists)")
    http, grpc = _free_port(), _free_port()
    with tempfile.TemporaryDirectory() as storage:
        env = {
            **os.environ,
            "QDRANT__SERVICE__HTTP_PORT": str(http),
            "QDRANT__SERVICE__GRPC_PORT": str(grpc),
            "QDRANT__STORAGE__STORAGE_PATH": f"{storage}/data",
            "QDRANT__STORAGE__SNAPSHOTS_PATH": f"{storage}/snapshots",
            "QDRANT__LOG_LEVEL": "WARN",
        }
        proc = subprocess.Popen(
            [binary], env=env, cwd=storage, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            deadline = time.monotonic() + 60
            while not _ready(http, grpc):
                assert proc.poll() is None, "the Qdrant server exited"
                assert time.monotonic() < deadline, "the Qdrant server was not ready in 60 s"
                time.sleep(0.05)
            yield f"http://127.0.0.1:{grpc}", proc
        finally:
            proc.kill()
            proc.wait()


def test_ingest_and_search_on_a_qdrant_server(
    quarry_bin: str, tmp_path: Path, qdrant: Tuple[str, "subprocess.Popen[bytes]"]
) -> None:
    url, server = qdrant

    async def main() -> None:
        async with QuarryClient.spawn(
            quarry_bin,
            data_dir=tmp_path,
            qdrant_url=url,
            qdrant_prefix="py_",
            qdrant_retry_ms=500,
            no_grpc=True,
        ) as q:
            r = await q.ingest_dir(CORPUS)
            assert r.files == 10 and r.chunks > 10
            hits = await q.search("split a shell command line")
            assert Path(hits[0].path).name == "shlex.py", hits
            [c] = await q.collections()
            assert c.documents == 10
            # The server goes away: a typed, retryable storage error naming the reason.
            server.kill()
            server.wait()
            with pytest.raises(StorageError) as e:
                await q.search("heap")
            assert e.value.data.get("reason") == "unavailable", e.value.data
            assert e.value.data.get("retryable") is True

    asyncio.run(main())
