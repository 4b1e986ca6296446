"""The binary under test is the one the test command built, never another ``quarry``
found on ``PATH``: ``QUARRY_BIN`` must name it (``scripts/test.sh`` sets it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    exe = os.environ.get("QUARRY_BIN")
    if not exe:
        raise pytest.UsageError("set QUARRY_BIN to the quarry binary under test (scripts/test.sh does)")
    if not (Path(exe).is_file() and os.access(exe, os.X_OK)):
        raise pytest.UsageError(f"QUARRY_BIN={exe} is not an executable file")


@pytest.fixture(scope="session")
def quarry_bin() -> str:
    return os.environ["QUARRY_BIN"]
