"""Running a task's shell command and reporting its outcome.

Shared by the backends that run commands themselves (Concurrent, Dask).
stdout is the task's result and is kept whole; stderr is only needed to
explain a failure, so only its tail is kept, whatever its size.
"""

from __future__ import annotations

import asyncio
import os
import string
import subprocess
import threading
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from ...errors import TaskExecutionError
from .spec import CommandResult, TaskSpec

#: Bytes of stderr kept for the error message of a failed command.
STDERR_TAIL = 8192


@dataclass
class CommandSpec:
    """How to run one executable task."""

    command: str
    env: Optional[Dict[str, str]] = None
    cwd: Optional[str] = None
    #: capture_stdio: stdout and stderr go to the files ``stdout``/``stderr`` here.
    stdio_dir: Optional[str] = None

    @classmethod
    def build(cls, command: str, opts: Mapping[str, Any],
              stdio_dir: Optional[str] = None) -> 'CommandSpec':
        """``command`` with the options that shape it: ``pre_exec``,
        ``environment``/``env``, ``sandbox``/``cwd``; its output into files
        in ``stdio_dir`` if given."""
        pre_exec: List[str] = opts.get('pre_exec') or []
        if isinstance(pre_exec, str):
            pre_exec = [pre_exec]
        if pre_exec:
            command = ' && '.join([*pre_exec, f'{{ {command}\n}}'])
        env = None
        environment = opts.get('environment') or opts.get('env')
        if environment:
            env = {**os.environ, **{str(k): str(v) for k, v in environment.items()}}
        cwd = opts.get('sandbox') or opts.get('cwd')
        return cls(command, env, cwd, stdio_dir)

    def open_stdio(self) -> Any:
        """The stdout and stderr files of a captured command (open for writing)."""
        os.makedirs(self.stdio_dir, exist_ok=True)
        return (open(os.path.join(self.stdio_dir, 'stdout'), 'wb'),
                open(os.path.join(self.stdio_dir, 'stderr'), 'wb'))

    def captured(self, exit_code: int) -> CommandResult:
        """The result of a captured command: the stdout file's path, stderr's tail."""
        stderr = os.path.join(self.stdio_dir, 'stderr')
        return CommandResult(exit_code, os.path.join(self.stdio_dir, 'stdout'),
                             read_tail(stderr, STDERR_TAIL), _file_size(stderr))


#: The task_description keys :meth:`CommandSpec.build` reads.
COMMAND_OPTIONS = ('pre_exec', 'environment', 'env', 'sandbox', 'cwd')


class _Tail:
    """Keeps the last ``limit`` bytes written to it and counts them all."""

    def __init__(self, limit: int = STDERR_TAIL) -> None:
        self.limit = limit
        self.size = 0
        self.data = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.size += len(chunk)
        self.data += chunk
        if len(self.data) > 2 * self.limit:
            del self.data[:-self.limit]

    def text(self) -> str:
        return bytes(self.data[-self.limit:]).decode(errors='replace')


#: Characters a POSIX shell gives no meaning to (outside of words it looks up).
_PLAIN = frozenset(string.ascii_letters + string.digits + '_@%+=:,./- ')
#: Words the shell runs itself rather than looking them up on PATH.
_SHELL_WORDS = frozenset(
    '. : [ [[ ]] ! { } alias bg break builtin cd chdir command continue declare dirs '
    'disown echo enable eval exec exit export false fc fg getopts hash help history jobs '
    'kill let local logout popd printf pushd pwd read readarray readonly return select set '
    'shift shopt source suspend test time times trap true type typeset ulimit umask unalias '
    'unset wait case do done elif else esac fi for function if in then until while'.split())


def plain_argv(command: str) -> Optional[List[str]]:
    """The argv of ``command`` if a shell would only split it on spaces, else None.

    Such a command runs without a shell (one exec instead of two): no quotes,
    expansions, redirections, operators, assignments or builtins.
    """
    if not command or not _PLAIN.issuperset(command):
        return None
    argv = command.split()
    if not argv or '=' in argv[0] or argv[0] in _SHELL_WORDS:
        return None
    return argv


class _CommandProtocol(asyncio.SubprocessProtocol):
    """Gathers a command's whole stdout and its stderr's tail as they arrive.

    One object per command, fed by the transport's callbacks: no stream
    readers and no reader tasks.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.transport: Optional[asyncio.SubprocessTransport] = None
        self.stdout: List[bytes] = []
        self.tail = _Tail()
        self.finished = False        # exited, and both pipes are closed
        self._waiters: List[asyncio.Future] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport   # type: ignore[assignment]

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if fd == 1:
            self.stdout.append(data)
        else:
            self.tail.feed(data)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.finished = True
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters = []

    @property
    def pid(self) -> int:
        return self.transport.get_pid()

    async def wait(self) -> int:
        """The exit code, once the process is gone and its output read."""
        if not self.finished:
            waiter = self._loop.create_future()
            self._waiters.append(waiter)
            await waiter
        return self.transport.get_returncode()


async def run_command(spec: CommandSpec) -> CommandResult:
    """Run ``spec`` as a subprocess of the running loop; kill it if cancelled.

    A command the shell would only split on spaces is executed directly;
    anything else (or a command not found that way) goes through /bin/sh.
    """
    if spec.cwd:
        os.makedirs(spec.cwd, exist_ok=True)
    loop = asyncio.get_running_loop()
    files = spec.open_stdio() if spec.stdio_dir else None
    out, err = files or (subprocess.PIPE, subprocess.PIPE)
    options = dict(stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                   env=spec.env, cwd=spec.cwd, start_new_session=True)
    try:
        argv = plain_argv(spec.command)
        transport = None
        if argv is not None:
            try:
                transport, proc = await loop.subprocess_exec(
                    lambda: _CommandProtocol(loop), *argv, **options)
            except OSError:
                transport = None      # not found or not executable: let the shell say so
        if transport is None:
            transport, proc = await loop.subprocess_shell(
                lambda: _CommandProtocol(loop), spec.command, **options)
    finally:
        for handle in files or ():
            handle.close()            # the child has its own copies
    try:
        exit_code = await proc.wait()
    except BaseException:
        _kill_group(proc.pid)
        await _reap(proc)
        raise
    finally:
        transport.close()
    if files:
        return spec.captured(exit_code)
    return CommandResult(exit_code, b''.join(proc.stdout).decode(errors='replace'),
                         proc.tail.text(), proc.tail.size)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Wait for a killed process to be gone, even through further cancellations."""
    cancelled = False
    while True:
        try:
            await asyncio.shield(proc.wait())
            break
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError


def run_command_sync(spec: CommandSpec) -> CommandResult:
    """Run ``spec`` as a blocking subprocess (for worker threads and processes)."""
    if spec.cwd:
        os.makedirs(spec.cwd, exist_ok=True)
    if spec.stdio_dir:
        out, err = spec.open_stdio()
        with out, err:
            proc = subprocess.Popen(spec.command, shell=True, stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, env=spec.env, cwd=spec.cwd,
                                    start_new_session=True)
        try:
            exit_code = proc.wait()
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        return spec.captured(exit_code)
    proc = subprocess.Popen(spec.command, shell=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            env=spec.env, cwd=spec.cwd, start_new_session=True)
    tail = _Tail()
    chunks: List[bytes] = []

    def read_stdout() -> None:
        for chunk in iter(lambda: proc.stdout.read(65536), b''):
            chunks.append(chunk)

    reader = threading.Thread(target=read_stdout, daemon=True)
    reader.start()
    try:
        for chunk in iter(lambda: proc.stderr.read(65536), b''):
            tail.feed(chunk)
        reader.join()
        exit_code = proc.wait()
    except BaseException:
        _kill_group(proc.pid)
        proc.wait()
        raise
    return CommandResult(exit_code, b''.join(chunks).decode(errors='replace'),
                         tail.text(), tail.size)


def read_tail(path: str, limit: int) -> str:
    """The last ``limit`` bytes of the file at ``path`` ('' if it cannot be read)."""
    try:
        with open(path, 'rb') as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - limit))
            return f.read().decode(errors='replace')
    except OSError:
        return ''


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, 9)
    except (ProcessLookupError, PermissionError):
        pass


def _size(nbytes: int) -> str:
    for unit in ('B', 'KiB', 'MiB', 'GiB'):
        if nbytes < 1024 or unit == 'GiB':
            return f'{nbytes:.0f} {unit}' if unit == 'B' else f'{nbytes:.1f} {unit}'
        nbytes /= 1024
    return f'{nbytes} B'


def command_failure(task: TaskSpec, result: CommandResult) -> TaskExecutionError:
    """The error for a command that exited non-zero, naming the task."""
    name = task.name
    stderr = result.stderr.strip()
    if result.stderr_size > STDERR_TAIL:
        stderr = (f'[stderr truncated: last {_size(STDERR_TAIL)} of '
                  f'{_size(result.stderr_size)}]\n{stderr}')
    message = (f"executable task '{name}' ({task.uid}) exited with code "
               f"{result.exit_code}: {task.command!r}")
    if stderr:
        message += f'\nstderr:\n{stderr}'
    return TaskExecutionError(message, task_name=str(name), command=str(task.command),
                              exit_code=result.exit_code, stderr=stderr, stdout=result.stdout)
