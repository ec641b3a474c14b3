"""Fixtures every test module gets: each test runs in its own temporary
directory with profiling off (``in_tmp_dir``, automatic), and a dry-run
engine (``dry``).  Helper modules live in ``tests/support/`` (on the path, see
``pythonpath`` in pyproject.toml); fixtures of one area in that area's
``conftest.py``."""

import pytest

from helpers import enter_tmp_dir
from radical.asyncflow import WorkflowEngine


@pytest.fixture(autouse=True)
def in_tmp_dir(tmp_path, monkeypatch):
    enter_tmp_dir(tmp_path, monkeypatch)


@pytest.fixture
async def dry():
    eng = await WorkflowEngine.create(dry_run=True)
    yield eng
    await eng.shutdown()
