"""Fixtures for the project-store tests."""
import sqlite3
from pathlib import Path

import pytest

from engine.store import Project

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def project(tmp_path):
    """A fresh, empty project, closed after the test."""
    with Project.create(tmp_path / "test.pretext") as p:
        yield p


@pytest.fixture
def v1_file(tmp_path) -> Path:
    """A real schema-1 project file, built from the frozen SQL dump."""
    path = tmp_path / "old.pretext"
    conn = sqlite3.connect(path)
    conn.executescript((FIXTURES / "schema_v1.sql").read_text())
    conn.close()
    return path
