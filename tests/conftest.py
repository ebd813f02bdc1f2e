"""Shared test fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Real files written by nobody on this project live beside the repository (never copied into it).
_DEFAULT_REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    """The shared real-data folder (override with BIOMEDCLIP_REALDATA); skips the test when absent."""
    path = Path(os.environ.get("BIOMEDCLIP_REALDATA", _DEFAULT_REALDATA))
    if not path.is_dir():
        pytest.skip(f"real data folder not found: {path}")
    return path
