"""Dry run: every task "succeeds" at once without running anything."""

from __future__ import annotations

from typing import Optional, Sequence

from ._command import CommandSpec
from .base import Session
from .dict_protocol import DictFace
from .spec import CommandResult, Reporter, TaskSpec

#: What a dry run's executable task "printed".
_NO_OUTPUT = CommandResult(0, '', '', 0)


class NoopExecutionBackend(DictFace):
    """Reports every submitted task DONE immediately; a dry run of the workflow.

    Function tasks return None, executable tasks an empty stdout and prompt
    tasks an empty answer.
    """

    #: a dry run "answers" prompt tasks too
    answers_prompts = True


    def __init__(self, *, name: Optional[str] = None) -> None:
        self._name = name
        self.session = Session()
        self._stopped = False

    async def submit(self, tasks: Sequence[TaskSpec], reporter: Reporter) -> None:
        """Report every task DONE at once (functions: None, commands: empty output)."""
        done = reporter.done
        for task in tasks:
            if task.stdio_dir is not None:      # empty files where the output would be
                done(task, CommandSpec(task.command, stdio_dir=task.stdio_dir).captured(
                    _touch_stdio(task.stdio_dir)))
                continue
            done(task, None if task.function is not None else _NO_OUTPUT)

    async def cancel_task(self, uid: str) -> bool:
        """Nothing is left running to cancel: False."""
        return False        # nothing is ever left running to cancel

    async def shutdown(self) -> None:
        """Nothing to stop."""
        self._stopped = True



def _touch_stdio(folder: str) -> int:
    """Empty stdout and stderr files in ``folder``; the exit code 0."""
    for handle in CommandSpec('', stdio_dir=folder).open_stdio():
        handle.close()
    return 0
