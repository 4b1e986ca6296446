"""quarry-client over gRPC against the real binary: the same typed API over a
``Session`` stream on the local socket as over a child's pipes, discovery through the
registry, ``auto()``, tokens. (No mocks: a real ``quarry serve`` owns the socket.)"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator, Dict, Iterator, List, Optional

import pytest

from quarry_client import (
    ConnectionLost,
    InvalidParams,
    InvalidPath,
    NotFound,
    Progress,
    QuarryClient,
    QuarryTimeout,
)

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "corpus"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


@contextlib.contextmanager
def server(tmp_path: Path, token: Optional[str] = None) -> Iterator[Dict[str, Any]]:
    """A real ``quarry serve --debug-methods`` on its own data and runtime folders,
    kept alive by its open stdin; yields its ``sidecar/ready`` params plus ``run``."""
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run_dir), RUST_LOG="warn")
    if token:
        env["QUARRY_TOKEN"] = token
    proc = subprocess.Popen(
        [os.environ["QUARRY_BIN"], "serve", "--debug-methods", "--data-dir", str(tmp_path / "data")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())["params"]
        ready["run"] = run_dir
        yield ready
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.asynccontextmanager
async def client(transport: str, tmp_path: Path) -> AsyncIterator[QuarryClient]:
    """The typed client over ``transport``: ``stdio`` spawns its own sidecar, ``grpc``
    connects to a running server's socket."""
    if transport == "stdio":
        async with QuarryClient.spawn(os.environ["QUARRY_BIN"], data_dir=tmp_path / "data", debug_methods=True) as q:
            yield q
        return
    with server(tmp_path) as ready:
        async with QuarryClient.connect(ready["endpoint"]) as q:
            assert q.transport == "grpc"
            yield q


@pytest.mark.parametrize("transport", ["stdio", "grpc"])
def test_the_same_behaviour_over_both_transports(transport: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with client(transport, tmp_path) as q:
            await q.ping()
            health = await q.health()
            assert health.status == "ok"
            # Concurrency: hundreds of calls in flight on one connection.
            echoed = await asyncio.gather(*(q.call("debug/echo", {"i": i}) for i in range(200)))
            assert [e["i"] for e in echoed] == list(range(200))
            # Ingest, progress, search.
            r = await q.ingest("/t/kiwi.txt", content="the kiwi is a flightless bird")
            assert r.chunks == 1
            seen: List[Progress] = []
            d = await q.ingest_dir(CORPUS, collection="corpus", on_progress=seen.append)
            assert d.files > 0 and seen and seen[-1].progress == d.files
            hits = await q.search("flightless kiwi")
            assert hits[0].path == "/t/kiwi.txt"
            # Typed errors for the kinds a caller meets.
            with pytest.raises(InvalidParams):
                await q.search("kiwi", limit=0)
            with pytest.raises(NotFound):
                await q.ingest(tmp_path / "no-such-file.txt")
            with pytest.raises(QuarryTimeout):
                await q.call("debug/sleep", {"ms": 5000}, timeout=0.05)
            # Cancelling the awaiting task cancels the call; the connection goes on.
            task = asyncio.ensure_future(q.call("debug/sleep", {"ms": 5000}))
            await asyncio.sleep(0.05)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert (await q.call("debug/echo", {"after": True})) == {"after": True}
            # A large result.
            big = await q.call("debug/echo", {"pad": "x" * (2 * 1024 * 1024)})
            assert len(big["pad"]) == 2 * 1024 * 1024

    run(main())


def test_a_wrong_token_is_refused_and_the_right_one_works(tmp_path: Path) -> None:
    async def main() -> None:
        with server(tmp_path, token="s3cret") as ready:
            with pytest.raises(ConnectionLost, match="UNAUTHENTICATED"):
                await QuarryClient.connect(ready["endpoint"], token="wrong", ready_timeout=10)
            async with QuarryClient.connect(ready["endpoint"], token="s3cret") as q:
                await q.ping()

    run(main())


def test_discover_skips_stale_entries_and_auto_prefers_a_live_instance(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def main() -> None:
        with server(tmp_path, token="tok") as ready:
            monkeypatch.setenv("XDG_RUNTIME_DIR", str(ready["run"]))
            instances = ready["run"] / "quarry" / "instances"
            # A stale entry (a pid that is not this Quarry) sorts first and is skipped.
            live = json.loads((instances / f"{ready['pid']}.json").read_text())
            stale = dict(live, pid=1, processStart=1, unix="/nonexistent.sock")
            (instances / "1.json").write_text(json.dumps(stale))
            async with QuarryClient.discover(tmp_path / "data") as q:
                assert q.transport == "grpc" and q.pid == ready["pid"]
                await q.ingest("/d/emu.txt", content="the emu runs")
            # auto(): the live instance of the folder, over gRPC (the same index).
            async with QuarryClient.auto(tmp_path / "data") as q:
                assert q.transport == "grpc"
                assert [h.path for h in await q.search("emu")] == ["/d/emu.txt"]
        # Nothing live for another folder: discover says so, auto() spawns one.
        with pytest.raises(FileNotFoundError):
            await QuarryClient.discover(tmp_path / "other")
        async with QuarryClient.auto(
            tmp_path / "other", binary=os.environ["QUARRY_BIN"]
        ) as q:
            assert q.transport == "stdio"
            await q.ping()

    run(main())


def test_the_committed_stubs_match_the_proto() -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "python" / "tools" / "gen_proto.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stdout + out.stderr


@contextlib.contextmanager
def daemon(tmp_path: Path, *args: str) -> Iterator[Dict[str, Any]]:
    """A real ``quarry daemon ARGS``; yields its registry entry once written."""
    run_dir = tmp_path / "drun"
    run_dir.mkdir(exist_ok=True)
    env = dict(os.environ, XDG_RUNTIME_DIR=str(run_dir), RUST_LOG="warn")
    proc = subprocess.Popen(
        [os.environ["QUARRY_BIN"], "daemon", "--data-dir", str(tmp_path / "ddata"), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    entry = run_dir / "quarry" / "instances" / f"{proc.pid}.json"
    try:
        end = time.monotonic() + 30
        while True:
            try:
                yield json.loads(entry.read_text())
                break
            except (OSError, ValueError):
                assert time.monotonic() < end, "no registry entry"
                time.sleep(0.02)
    finally:
        proc.terminate()
        proc.wait(10)


def test_tcp_with_a_token_and_allowed_roots(tmp_path: Path) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "ibex.txt").write_text("the ibex climbs\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("the secret\n")

    async def main() -> None:
        with daemon(tmp_path, "--grpc-listen", "127.0.0.1:0", "--allow-root", str(allowed)) as entry:
            target, token = entry["tcp"], entry["token"]
            with pytest.raises(ConnectionLost, match="UNAUTHENTICATED"):
                await QuarryClient.connect(target, ready_timeout=10)
            async with QuarryClient.connect(target, token=token) as q:
                d = await q.ingest_dir(allowed)
                assert d.files == 1
                assert [h.path for h in await q.search("ibex")] == [str(allowed.resolve() / "ibex.txt")]
                # Outside the allowed roots, and through `..`: refused before reading.
                for escape in (outside, allowed / ".." / "outside"):
                    with pytest.raises(InvalidPath):
                        await q.ingest_dir(escape)
                with pytest.raises(InvalidPath):
                    await q.ingest(outside / "secret.txt")
                # Content-based calls read nothing: allowed.
                await q.ingest("/remote/note.txt", content="the note")

    run(main())


def test_tls_with_a_certificate_made_here(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make the test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )

    async def main() -> None:
        with daemon(tmp_path, "--grpc-listen", "127.0.0.1:0", "--tls-cert", str(cert), "--tls-key", str(key)) as entry:
            assert entry["tls"] is True
            target, token = entry["tcp"], entry["token"]
            async with QuarryClient.connect(target, token=token, tls=cert, server_name="localhost") as q:
                await q.ingest("/tls/crane.txt", content="the crane dances")
                assert [h.path for h in await q.search("crane")] == ["/tls/crane.txt"]
            # Plaintext to the TLS port never gets a session.
            with pytest.raises((ConnectionLost, asyncio.TimeoutError)):
                await QuarryClient.connect(target, token=token, ready_timeout=5)

    run(main())


def test_sync_sends_only_what_changed(tmp_path: Path) -> None:
    folder = tmp_path / "remote"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("the alpaca hums\n")
    (folder / "sub" / "b.md").write_text("# B\nthe bison grazes\n")
    (folder / "c.txt").write_text("the caracal leaps\n")
    (folder / ".hidden").write_text("never sent\n")
    (folder / "blob.bin").write_bytes(bytes(range(256)) * 64)

    async def main() -> None:
        with server(tmp_path) as ready:
            async with QuarryClient.connect(ready["endpoint"]) as q:
                seen: List[Progress] = []
                r = await q.sync(folder, collection="mirror", on_progress=seen.append)
                assert (r.needed, r.indexed, r.unchanged, r.deleted, r.failed) == (4, 3, 0, 0, 1)
                assert r.errors[0][0] == str(folder / "blob.bin"), r.errors
                assert r.sent_bytes > 0 and seen
                # Nothing changed: nothing asked for, no content sent — the binary file
                # the server refused included.
                r = await q.sync(folder, collection="mirror")
                assert (r.needed, r.unchanged, r.skipped, r.sent_bytes) == (0, 3, 1, 0)
                # One changed, one gone: one sent, one deleted.
                (folder / "a.txt").write_text("the alpaca sings now\n")
                (folder / "c.txt").unlink()
                r = await q.sync(folder, collection="mirror")
                assert (r.needed, r.indexed, r.deleted, r.unchanged, r.skipped) == (1, 1, 1, 1, 1)
                hits = await q.search("alpaca sings caracal", collection="mirror")
                assert [h.path for h in hits] == [str(folder / "a.txt")]
        # Over stdio the engine shares the file system: sync says to use ingest_dir.
        async with QuarryClient.spawn(os.environ["QUARRY_BIN"], data_dir=tmp_path / "s") as q:
            with pytest.raises(NotImplementedError):
                await q.sync(folder)

    run(main())


def test_a_restarted_daemon_is_reconnected_and_the_next_call_succeeds(tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    args = ("--grpc-listen", f"127.0.0.1:{port}", "--token", "steady")

    async def main() -> None:
        with daemon(tmp_path, *args):
            q = await QuarryClient.connect(f"127.0.0.1:{port}", token="steady")
            await q.ingest("/r/gnu.txt", content="the gnu migrates")
            assert [h.path for h in await q.search("gnu")] == ["/r/gnu.txt"]
            events = q.health_events(interval=0.05)
            first = await events.__anext__()
            assert first.state == "ok" and first.pid == q.pid
        # The daemon is gone: the health watch says so ...
        lost = await asyncio.wait_for(events.__anext__(), 30)
        assert lost.state == "lost" and lost.health is None
        # ... and a new one serves the same folder on the same port.
        with daemon(tmp_path, *args):
            back = await asyncio.wait_for(events.__anext__(), 30)
            assert back.state == "ok" and back.pid == q.pid
            await events.aclose()
            try:
                assert [h.path for h in await q.search("gnu")] == ["/r/gnu.txt"]
                await q.ingest("/r/okapi.txt", content="the okapi hides")
                assert q.ready["pid"] == q.pid
            finally:
                await q.close()

    run(main())
