"""What a finished RADICAL-Pilot task means for its engine task.

Reads a command's output whole (RP keeps only a tail in the task), a
function's outcome (from the result file or RAPTOR's return value), and
turns a FAILED RP task into the exception the engine reports.
"""

from __future__ import annotations

import os
from typing import Any, Tuple

from ....errors import BackendError, TaskExecutionError
from .._command import STDERR_TAIL, command_failure, read_tail
from ..spec import CommandResult, TaskSpec
from .describe import TaskKind
from .payload import load_outcome, outcome_blob, raptor_outcome

#: RP keeps only the last 1024 characters of stdout/stderr in the task.
_RP_TAIL_MARK = '[... CONTENT SHORTENED ...]'
_RP_TAIL_LENGTH = 1024


def text(value: Any) -> str:
    """RP's stdout/stderr of a task: a string, or (MPIWorker) one per rank."""
    if isinstance(value, (list, tuple)):
        return '\n'.join(str(v) for v in value if v)
    return value or ''


def command_result(rp_task: Any, sandbox: str) -> CommandResult:
    """stdout whole (read from the sandbox when RP kept only its tail), stderr's tail."""
    stdout = rp_task.stdout or ''
    stderr = rp_task.stderr or ''
    if _shortened(stdout):
        path = _output_file(rp_task, sandbox, 'stdout', 'out')
        if os.path.isfile(path):
            with open(path, errors='replace') as f:
                stdout = f.read()
    size = len(stderr)
    if _shortened(stderr):
        path = _output_file(rp_task, sandbox, 'stderr', 'err')
        if os.path.isfile(path):
            size = os.path.getsize(path)
            stderr = read_tail(path, STDERR_TAIL)
    return CommandResult(int(rp_task.exit_code or 0), stdout, stderr, size)


def _shortened(text: str) -> bool:
    return text.startswith(_RP_TAIL_MARK) or len(text) >= _RP_TAIL_LENGTH


def _output_file(rp_task: Any, sandbox: str, stream: str, suffix: str) -> str:
    """Where the task's ``stream`` (stdout/stderr) is in its sandbox."""
    return os.path.join(sandbox, rp_task.description.get(stream) or f'{rp_task.uid}.{suffix}')


def function_outcome(kind: TaskKind, task: TaskSpec, rp_task: Any,
                     sandbox: str) -> Tuple[bool, Any]:
    """(True, value) or (False, exception) of a function task."""
    name = task.name
    try:
        if kind is TaskKind.RAPTOR_FUNCTION:
            blob = raptor_outcome(rp_task.return_value)
        else:
            blob = outcome_blob(text(rp_task.stdout), sandbox)
        return load_outcome(blob, task)
    except Exception as exc:
        stderr = text(rp_task.stderr).strip()
        error = BackendError(
            f"function task '{name}' ({task.uid}) left no result: "
            f"{type(exc).__name__}: {exc}"
            + (f'\nstderr:\n{stderr}' if stderr else '')
            + f'\ntask sandbox: {sandbox}')
        error.__cause__ = exc
        return False, error


def failure(kind: TaskKind, task: TaskSpec, rp_task: Any, sandbox: str) -> BaseException:
    """The exception of a task RP reports FAILED."""
    name = task.name
    if kind in (TaskKind.EXECUTABLE, TaskKind.SERVICE) and rp_task.exit_code:
        result = command_result(rp_task, sandbox)
        error = command_failure(task, result)
        return TaskExecutionError(
            f'{error}\ntask sandbox: {sandbox}', task_name=error.task_name,
            command=error.command, exit_code=error.exit_code, stderr=error.stderr,
            stdout=error.stdout)
    if kind is TaskKind.RAPTOR_FUNCTION and rp_task.return_value:
        ok, value = function_outcome(kind, task, rp_task, sandbox)
        return value if not ok else BackendError(
            f"function task '{name}' returned but RADICAL-Pilot marked it FAILED")
    detail = rp_task.exception or ''
    if rp_task.exception_detail:
        detail += f'\n{rp_task.exception_detail}'
    stderr = text(rp_task.stderr).strip()
    what = 'function' if kind in (TaskKind.FUNCTION, TaskKind.RAPTOR_FUNCTION) \
        else 'task'
    message = (f"{what} '{name}' ({task.uid}) failed in RADICAL-Pilot"
               + (f' with exit code {rp_task.exit_code}' if rp_task.exit_code else ''))
    if detail.strip():
        message += f':\n{detail.strip()}'
    if stderr:
        message += f'\nstderr:\n{stderr[-STDERR_TAIL:]}'
    message += f'\ntask sandbox: {sandbox}'
    return (TaskExecutionError(message, task_name=str(name), command=str(task.command),
                               exit_code=rp_task.exit_code, stderr=stderr)
            if kind is TaskKind.EXECUTABLE else BackendError(message))
