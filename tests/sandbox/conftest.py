"""Fixtures of the sandbox tests."""

from pathlib import Path

import pytest


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """The supervisor's work area, under the test's own temporary directory."""
    path = tmp_path / "work"
    path.mkdir()
    return path
