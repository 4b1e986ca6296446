"""The program a user would otherwise write: upsert prepared sparse BM25 points into a
Qdrant server with the official Python client, in batches, waiting for each.

    python benches/qdrant_baseline.py POINTS.jsonl http://127.0.0.1:HTTP_PORT [INDEXES [BATCH]]

POINTS.jsonl holds one point per line: {"id", "indices", "values", "payload"}. The points
are read first; the timed part builds the client's point models and uploads them into a
fresh collection laid out like Quarry's (a `sparse` vector with the IDF modifier, and
INDEXES, a JSON object of payload field -> index type, created before the upload).
Prints one JSON line: {"points", "secs", "batch", "indexes", "version"}.
"""

from __future__ import annotations

import json
import sys
import time
from importlib.metadata import version

from qdrant_client import QdrantClient, models


def main() -> None:
    path, url = sys.argv[1], sys.argv[2]
    indexes = json.loads(sys.argv[3]) if len(sys.argv) > 3 else {}
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 256
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    client = QdrantClient(url=url, timeout=120)
    name = "python_baseline"
    if client.collection_exists(name):
        client.delete_collection(name)
    client.create_collection(
        name,
        vectors_config={},
        sparse_vectors_config={
            "sparse": models.SparseVectorParams(modifier=models.Modifier.IDF)
        },
    )
    for field, kind in indexes.items():
        client.create_payload_index(name, field, field_schema=kind, wait=True)
    started = time.perf_counter()
    for i in range(0, len(rows), batch):
        points = [
            models.PointStruct(
                id=r["id"],
                vector={
                    "sparse": models.SparseVector(
                        indices=r["indices"], values=r["values"]
                    )
                },
                payload=r["payload"],
            )
            for r in rows[i : i + batch]
        ]
        client.upsert(name, points=points, wait=True)
    secs = time.perf_counter() - started
    count = client.count(name, exact=True).count
    assert count == len(rows), (count, len(rows))
    print(
        json.dumps(
            {
                "points": len(rows),
                "secs": secs,
                "batch": batch,
                "indexes": len(indexes),
                "version": version("qdrant-client"),
            }
        )
    )


if __name__ == "__main__":
    main()
