"""quarry-client against the real binary over real pipes (no mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Any, List

import pytest

from quarry_client import (
    ERRORS_BY_KIND,
    ConnectionLost,
    MessageTooLarge,
    InternalError,
    InvalidParams,
    InvalidPath,
    MethodNotFound,
    NotFound,
    Overloaded,
    Progress,
    QuarryCancelled,
    QuarryClient,
    QuarryTimeout,
    SidecarExited,
    SidecarUnavailable,
    UnsupportedContent,
    error_from_response,
    find_binary,
)

REPO = Path(__file__).resolve().parents[2]
CORPUS = REPO / "tests" / "fixtures" / "corpus"


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 120))


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return not stat.rsplit(") ", 1)[1].startswith("Z")


def wait_gone(pid: int, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return not alive(pid)


def spawn(tmp_path: Path, **kw: Any):  # type: ignore[no-untyped-def]
    kw.setdefault("debug_methods", True)
    return QuarryClient.spawn(os.environ["QUARRY_BIN"], data_dir=tmp_path / "data", **kw)


async def until(predicate: Any, what: str, seconds: float = 60.0) -> None:
    """Waits for the state a test needs (never a fixed sleep); the limit is a safety net."""
    end = time.monotonic() + seconds
    while not await predicate():
        assert time.monotonic() < end, f"never reached: {what}"
        await asyncio.sleep(0.01)


def test_binary_is_the_one_under_test(tmp_path: Path) -> None:
    assert find_binary() == os.environ["QUARRY_BIN"]
    # An explicit binary that is not there is an error, never another quarry.
    with pytest.raises(FileNotFoundError):
        find_binary(tmp_path / "no-quarry")


def test_two_hundred_concurrent_calls(tmp_path: Path) -> None:
    async def main() -> None:
        async with spawn(tmp_path) as q:
            results = await asyncio.gather(
                *(q.call("debug/echo", {"i": i, "pad": "x" * (i % 50)}) for i in range(300))
            )
            assert [r["i"] for r in results] == list(range(300))
            slow = await asyncio.gather(*(q.call("debug/sleep", {"ms": 20}) for _ in range(200)))
            assert all(r == {"slept": 20} for r in slow)

    run(main())


def test_timeouts_and_cancellation(tmp_path: Path) -> None:
    async def main() -> None:
        async with spawn(tmp_path, max_concurrency=1) as q:
            with pytest.raises(QuarryTimeout) as e:
                await q.call("debug/sleep", {"ms": 10_000}, timeout=0.2)
            assert e.value.code == -32001
            assert e.value.data["stage"] in ("running", "queued")
            # Cancelling the awaiting task cancels the work: the one slot frees at once.
            task = asyncio.create_task(q.call("debug/sleep", {"ms": 60_000}))

            async def running() -> bool:
                return (await q.health()).in_flight == 1

            await until(running, "the sleep runs")
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            t = time.monotonic()
            assert await q.call("debug/echo", {"after": 1}) == {"after": 1}
            assert time.monotonic() - t < 5
            health = await q.health()
            assert health.in_flight == 0 and health.queued == 0

    run(main())


def test_progress_callbacks(tmp_path: Path) -> None:
    async def main() -> None:
        seen: List[Progress] = []
        async with spawn(tmp_path) as q:
            r = await q.call("debug/sleep", {"ms": 55}, on_progress=seen.append)
        assert r == {"slept": 55}
        assert [p.progress for p in seen] == [10.0, 20.0, 30.0, 40.0, 50.0]
        assert all(p.total == 55.0 for p in seen)

    run(main())


def test_a_result_larger_than_one_mib(tmp_path: Path) -> None:
    async def main() -> None:
        big = "y" * (3 * 1024 * 1024)
        async with spawn(tmp_path) as q:
            r = await q.call("debug/echo", {"big": big})
        assert r["big"] == big

    run(main())


def test_typed_errors_for_every_reachable_kind(tmp_path: Path) -> None:
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02")

    async def main() -> None:
        async with spawn(tmp_path) as q:
            with pytest.raises(MethodNotFound):
                await q.call("no/such/method")
            with pytest.raises(InvalidParams) as e:
                await q.call("debug/sleep", {"ms": "soon"})
            assert e.value.data["details"]["field"] == "ms"
            with pytest.raises(InternalError):
                await q.call("debug/panic")
            with pytest.raises(NotFound):
                await q.search("anything", collection="missing")
            with pytest.raises(NotFound):
                await q.ingest_dir(tmp_path / "nowhere")
            with pytest.raises(InvalidPath):
                await q.ingest_dir(binary)
            with pytest.raises(UnsupportedContent):
                await q.ingest(binary)
            # A cancellation decided by someone else arrives as QuarryCancelled.
            call = asyncio.create_task(q.call("debug/sleep", {"ms": 60_000}))

            async def sleeping() -> bool:
                return (await q.stats())["queue"]["running"] == 1

            await until(sleeping, "the sleep runs")
            rid = max(q._conn.pending)  # the id of the sleep above
            await q.notify("notifications/cancelled", {"requestId": rid})
            with pytest.raises(QuarryCancelled):
                await call
        async with spawn(tmp_path, supervised=False, max_concurrency=1, max_queue=1) as q:
            calls = [asyncio.create_task(q.call("debug/sleep", {"ms": 60_000})) for _ in range(2)]

            async def full() -> bool:
                queue = (await q.stats())["queue"]
                return queue["running"] == 1 and queue["queued"] == 1

            await until(full, "one sleep running and one queued")
            with pytest.raises(Overloaded) as e:
                await q.call("debug/sleep", {"ms": 1})
            assert e.value.data["queueLimit"] == 1
            for c in calls:
                c.cancel()
            await asyncio.gather(*calls, return_exceptions=True)

    run(main())


def test_engine_helpers_return_dataclasses(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)

    async def main() -> None:
        async with spawn(tmp_path) as q:
            seen: List[Progress] = []
            r = await q.ingest_dir(corpus, on_progress=seen.append)
            assert r.files == 10 and r.chunks > 30 and r.unchanged == 0
            assert seen and seen[-1].progress == 10
            again = await q.ingest_dir(corpus)
            assert again.unchanged == 10 and again.chunks == 0
            hits = await q.search("split a string using shell-like syntax", limit=3)
            assert Path(hits[0].path).name == "shlex.py"
            assert hits[0].start_line <= hits[0].end_line and hits[0].language == "python"
            only_md = await q.search("rust", languages=["markdown"], limit=20)
            assert only_md and all(h.language == "markdown" for h in only_md)
            one = await q.ingest(corpus / "python" / "bisect.py", collection="one")
            assert one.chunks > 0 and not one.unchanged
            assert (await q.ingest(corpus / "python" / "bisect.py", collection="one")).unchanged
            cols = {c.name: c for c in await q.collections()}
            assert cols["default"].documents == 10 and cols["one"].documents == 1
            assert await q.delete(corpus / "python" / "bisect.py", collection="one") == 1
            assert await q.create_collection("two") is True
            assert await q.delete_collection("two") is True

    run(main())


def test_a_supervised_crash_then_the_next_call_succeeds(tmp_path: Path) -> None:
    async def main() -> None:
        async with spawn(tmp_path) as q:
            events = q.events()
            first = (await q.status())["pid"]
            with pytest.raises(SidecarExited) as e:
                await q.call("debug/exit", {"code": 4})
            assert e.value.data["exitCode"] == 4
            kinds = []
            async for ev in events:
                # The first child's own `ready` event may still be on its way.
                if not kinds and ev.event != "exited":
                    continue
                kinds.append(ev.event)
                if ev.event == "ready":
                    break
            assert kinds == ["exited", "restarting", "started", "ready"], kinds
            assert await q.call("debug/echo", {"ok": True}) == {"ok": True}
            second = (await q.status())["pid"]
            assert second != first and not alive(first)

    run(main())


def test_idempotent_calls_are_replayed(tmp_path: Path) -> None:
    async def main() -> None:
        async with spawn(tmp_path) as q:
            pid = (await q.status())["pid"]
            replayed = asyncio.create_task(q.call("debug/sleep", {"ms": 700}, idempotent=True))
            plain = asyncio.create_task(q.call("debug/sleep", {"ms": 60_000}))

            async def both_running() -> bool:
                return (await q.stats())["queue"]["running"] == 2

            await until(both_running, "both sleeps run in the child")
            os.kill(pid, signal.SIGKILL)
            assert await replayed == {"slept": 700}
            with pytest.raises(SidecarExited):
                await plain

    run(main())


def test_giving_up_raises_sidecar_unavailable(tmp_path: Path) -> None:
    async def main() -> None:
        async with spawn(tmp_path, max_restarts=0) as q:
            with pytest.raises(SidecarExited):
                await q.call("debug/exit", {"code": 1})
            with pytest.raises(SidecarUnavailable):
                for _ in range(50):
                    await q.call("ping")
                    await asyncio.sleep(0.05)

    run(main())


def test_clean_shutdown_leaves_no_process(tmp_path: Path) -> None:
    async def main() -> tuple:
        async with spawn(tmp_path) as q:
            child = (await q.status())["pid"]
            proxy = q.pid
        return proxy, child

    proxy, child = run(main())
    assert wait_gone(proxy) and wait_gone(child)


def test_no_process_left_when_the_host_raises_or_is_cancelled(tmp_path: Path) -> None:
    pids: List[int] = []

    async def raising() -> None:
        async with spawn(tmp_path) as q:
            pids.extend([q.pid, (await q.status())["pid"]])
            raise RuntimeError("host bug")

    with pytest.raises(RuntimeError):
        run(raising())

    async def cancelled() -> None:
        async def host() -> None:
            async with spawn(tmp_path) as q:
                pids.extend([q.pid, (await q.status())["pid"]])
                await asyncio.sleep(3600)

        task = asyncio.create_task(host())
        while len(pids) < 4:
            await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(cancelled())
    for pid in pids:
        assert wait_gone(pid), pid


def test_watch_yields_events_and_search_follows(tmp_path: Path) -> None:
    root = tmp_path / "watched"
    root.mkdir()
    (root / "old.txt").write_text("a narwhal was here first\n")

    async def main() -> None:
        async with spawn(tmp_path) as q:
            kinds = []

            async def writer() -> None:
                async def watching() -> bool:
                    return len(await q.watches()) == 1

                await until(watching, "the watch runs")
                (root / "new.txt").write_text("the ocelot hunts\n")

            w = asyncio.create_task(writer())
            async with contextlib.aclosing(q.watch(root, debounce_ms=50)) as events:
                async for ev in events:
                    kinds.append(ev.kind)
                    assert ev.indexed and Path(ev.path).name == "new.txt", ev
                    if ev.kind == "created":
                        assert (await q.search("ocelot"))[0].path.endswith("new.txt")
                        (root / "new.txt").write_text("the ocelot hunts the quokka\n")
                    elif ev.kind == "modified":
                        assert (await q.search("quokka"))[0].path.endswith("new.txt")
                        (root / "new.txt").unlink()
                    elif ev.kind == "deleted":
                        break
            await w
            assert kinds == ["created", "modified", "deleted"]
            assert await q.watches() == []
            assert len(await q.search("narwhal")) == 1  # reconciled on start

    run(main())


def test_unsupervised_death_fails_calls_with_connection_lost(tmp_path: Path) -> None:
    async def main() -> None:
        async with spawn(tmp_path, supervised=False) as q:
            task = asyncio.create_task(q.call("debug/sleep", {"ms": 60_000}))
            await asyncio.sleep(0.1)
            os.kill(q.pid, signal.SIGKILL)
            with pytest.raises(ConnectionLost):
                await task

    run(main())


def test_a_response_over_the_line_limit_fails_its_call_and_the_connection_goes_on(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        async with spawn(tmp_path, supervised=False, max_line_bytes=64 * 1024) as q:
            with pytest.raises(MessageTooLarge) as e:
                await q.call("debug/echo", {"big": "z" * (200 * 1024)}, timeout=30)
            assert e.value.data["size"] > 200 * 1024
            # The stream resynchronised: the next calls are answered.
            assert await q.call("debug/echo", {"small": 1}) == {"small": 1}
            results = await asyncio.gather(*(q.call("debug/echo", {"i": i}) for i in range(50)))
            assert [r["i"] for r in results] == list(range(50))

    run(main())


def test_a_watch_through_a_symlinked_root_ends_when_the_root_is_deleted(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    (real / "a.txt").write_text("the pangolin curls\n")

    async def main() -> None:
        async with spawn(tmp_path) as q:
            seen = []

            async def remover() -> None:
                async def watching() -> bool:
                    return len(await q.watches()) == 1

                await until(watching, "the watch runs")
                link.unlink()
                shutil.rmtree(real)

            r = asyncio.create_task(remover())
            async with contextlib.aclosing(q.watch(link, debounce_ms=50)) as events:
                async for ev in events:
                    seen.append(ev)
            await r
            assert seen and seen[-1].kind == "deleted" and seen[-1].error, seen
            assert seen[-1].path == os.path.abspath(link)
            assert await q.watches() == []

    run(asyncio.wait_for(main(), 60))


def test_error_classes_match_the_schema() -> None:
    """Every error kind in schemas/openrpc.json has its class, with the same kind."""
    spec = json.loads((REPO / "schemas" / "openrpc.json").read_text())
    kinds = {e["data"]["kind"] for e in spec["components"]["errors"].values()}
    assert kinds <= set(ERRORS_BY_KIND), sorted(kinds - set(ERRORS_BY_KIND))
    for kind in kinds:
        assert ERRORS_BY_KIND[kind].kind == kind
    codes = {e["data"]["kind"]: e["code"] for e in spec["components"]["errors"].values()}
    for kind, code in codes.items():
        err = error_from_response({"code": code, "message": "m", "data": {"kind": kind}})
        assert type(err) is ERRORS_BY_KIND[kind] and err.code == code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-v"]))


def test_two_clients_on_one_data_folder_share_one_index(tmp_path: Path) -> None:
    """GRPC.md §6 from Python, with no change to the client: the second process follows
    the first, and takes the folder over when the first is killed."""

    async def main() -> None:
        async with spawn(tmp_path) as first, spawn(tmp_path) as second:
            owner = await first.call("health")
            assert owner["role"] == "owner"
            health = await second.call("health")
            assert health["role"] == "follower"
            assert health["ownerPid"] == owner["ownerPid"]
            await first.call(
                "documents/ingest", {"path": "/py/quail.txt", "content": "the quail hides"}
            )
            hits = (await second.call("search/query", {"query": "quail"}))["hits"]
            assert [h["path"] for h in hits] == ["/py/quail.txt"]
            # Progress through the follower arrives under the caller's own callback.
            seen: List[Any] = []
            result = await second.call(
                "documents/ingestDir",
                {"root": str(CORPUS)},
                on_progress=lambda p: seen.append(p),
            )
            assert result["files"] > 0 and seen
            # kill -9 of the owning sidecar: one of the two processes owns the folder
            # next (the follower, or the restart of the killed one), both keep answering.
            os.kill(owner["ownerPid"], signal.SIGKILL)
            for q in (second, first):
                hits = (await q.call("search/query", {"query": "quail"}))["hits"]
                assert [h["path"] for h in hits] == ["/py/quail.txt"]
            roles = sorted([(await q.call("health"))["role"] for q in (first, second)])
            assert roles == ["follower", "owner"]

    run(main())
