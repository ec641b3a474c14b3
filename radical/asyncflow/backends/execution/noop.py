"""Dry run: every task "succeeds" at once without running anything."""

from __future__ import annotations

from typing import List

from ...constants import StateMapper
from .base import BaseExecutionBackend, Session, SharedFileSystemMixin, TaskDict

StateMapper.register_backend_states_with_defaults('noop')


class NoopExecutionBackend(SharedFileSystemMixin, BaseExecutionBackend):
    """Reports every submitted task DONE immediately; a dry run of the workflow.

    Function tasks return None and executable tasks an empty stdout.
    """

    def __init__(self) -> None:
        self.session = Session()
        self._states = StateMapper('noop')
        self._stopped = False

    async def submit_tasks(self, tasks: List[TaskDict]) -> None:
        done = self._states.DONE
        report = self.task_state_cb
        for task in tasks:
            task['return_value'] = None
            if task.get('function') is None:      # an executable: its empty output
                task['stdout'] = ''
                task['stderr'] = ''
                task['exit_code'] = 0
            report(task, done)

    async def cancel_task(self, uid: str) -> bool:
        return False        # nothing is ever left running to cancel

    async def shutdown(self) -> None:
        self._stopped = True

    def state(self) -> str:
        return 'STOPPED' if self._stopped else 'RUNNING'

    def get_task_states_map(self) -> StateMapper:
        return self._states

