"""Helpers shared by the test modules: processes, named pipes, side-effect
files, journals.  The common fixtures are in ``tests/conftest.py``; modules
whose working-directory fixture also clears variables define their own
``in_tmp_dir`` on top of :func:`enter_tmp_dir`.
"""

import asyncio
import os
import time

import psutil
import pytest

from radical.asyncflow.campaign.task_journal import TaskJournal

FIFO_WAIT = 10      # seconds a task gets to write into a named pipe


# ------------------------------------------------------------------ fixtures

def enter_tmp_dir(tmp_path, monkeypatch, *unset):
    """Run in ``tmp_path`` without profiling, with the ``unset`` variables removed."""
    monkeypatch.chdir(tmp_path)
    # radical.utils profiles by default, and its profiler looks up an NTP
    # server when created (see test_create_does_no_network_io).
    monkeypatch.setenv('RADICAL_ASYNCFLOW_PROFILE', 'False')
    for name in unset:
        monkeypatch.delenv(name, raising=False)


# ----------------------------------------------------------------- processes

def alive(pid):
    """Whether ``pid`` is a running (not zombie) process."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


async def wait_gone(pid, timeout=3.0):
    """True once ``pid`` is gone; the loop keeps running meanwhile."""
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return not alive(pid)


async def wait_until(condition, timeout=10.0):
    """True once ``condition()`` holds, False if ``timeout`` passes first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            return False
        await asyncio.sleep(0.05)
    return True


# --------------------------------------------------------------- named pipes

def make_fifo(tmp_path, name='pid.fifo'):
    path = tmp_path / name
    os.mkfifo(path)
    return path


async def read_fifo(path, timeout=FIFO_WAIT):
    """What a task wrote into the named pipe ``path`` (opened for writing by it)."""
    loop = asyncio.get_running_loop()

    def read():
        with open(path) as f:
            return f.read()

    fut = loop.run_in_executor(None, read)
    try:
        return await asyncio.wait_for(asyncio.shield(fut), timeout)
    except asyncio.TimeoutError:
        with open(path, 'w'):       # unblock the reader thread
            pass
        await fut
        pytest.fail(f'no task wrote to {path} within {timeout}s')


# ------------------------------------------------- side-effect files, journal

def mark(path, line='x'):
    """Append one line to ``path`` (atomic for short lines)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    try:
        os.write(fd, f'{line}\n'.encode())
    finally:
        os.close(fd)


def count(path):
    """How many lines :func:`mark` has appended to ``path``."""
    try:
        with open(path) as handle:
            return len(handle.read().splitlines())
    except FileNotFoundError:
        return 0


def journal_rows(path):
    journal = TaskJournal(str(path))
    try:
        return len(journal)
    finally:
        journal.close()
