"""A smoke test from another language: Python's grpcio finds `quarry.v1.Quarry` through
server reflection (v1alpha, the only version Python's reflection client speaks) on a real
`quarry daemon`'s Unix socket, builds the request types from the reflected descriptors,
and calls it — no generated stubs involved."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

grpc = pytest.importorskip("grpc")
from google.protobuf import descriptor_pool, message_factory  # noqa: E402
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (  # noqa: E402
    ProtoReflectionDescriptorDatabase,
)


def test_reflection_lists_the_service_and_a_call_works(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    daemon = subprocess.Popen(
        [os.environ["QUARRY_BIN"], "daemon", "--data-dir", str(tmp_path / "data")],
        env={**os.environ, "XDG_RUNTIME_DIR": str(run)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        socket = run / "quarry" / f"{daemon.pid}.sock"
        end = time.monotonic() + 60
        while not socket.exists():
            assert time.monotonic() < end, "no socket"
            assert daemon.poll() is None, "the daemon exited"
            time.sleep(0.02)
        # grpc-core would send the socket path as :authority, which is not one.
        options = [("grpc.default_authority", "localhost")]
        with grpc.insecure_channel(f"unix:{socket}", options=options) as channel:
            db = ProtoReflectionDescriptorDatabase(channel)
            assert "quarry.v1.Quarry" in db.get_services()
            pool = descriptor_pool.DescriptorPool(db)
            service = pool.FindServiceByName("quarry.v1.Quarry")
            assert {m.name for m in service.methods} >= {"Search", "IngestDir", "SyncIndex"}
            create = service.methods_by_name["CreateCollection"]
            request_cls = message_factory.GetMessageClass(create.input_type)
            response_cls = message_factory.GetMessageClass(create.output_type)
            call = channel.unary_unary(
                "/quarry.v1.Quarry/CreateCollection",
                request_serializer=lambda m: m.SerializeToString(),
                response_deserializer=response_cls.FromString,
            )
            reply = call(request_cls(name="from_python"), timeout=30)
            assert reply.name == "from_python" and reply.created
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
