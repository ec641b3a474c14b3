"""A small backend written only against the documented dict protocol (0.1-0.5):
it reports from worker threads.  Shared by the legacy-adapter and routing tests."""

import asyncio
import subprocess
import threading

from radical.asyncflow.constants import StateMapper

#: Seconds a command may run.
WAIT = 60


class ForeignBackend:
    """Written against the dict protocol only: reports from worker threads."""

    # Declared: a backend that does not declare them is not asked to link (as in 0.6).
    supports_implicit_data_linking = True
    supports_explicit_data_linking = True

    def __init__(self):
        StateMapper.register_backend_states('foreign', done_state='ok', failed_state='bad',
                                            canceled_state='gone', running_state='busy')
        self.callback = None
        self.registrations = 0
        self.implicit = []
        self.explicit = []
        self.cancelled = set()
        self.stopped = False
        self.threads = []

    def register_callback(self, func):
        self.registrations += 1
        self.callback = func

    def get_task_states_map(self):
        return StateMapper('foreign')

    def task_state_cb(self, task, state):
        self.callback(task, state)

    def build_task(self, uid, task_desc, task_backend_specific_kwargs):
        return task_desc

    def link_implicit_data_deps(self, src_task, dst_task):
        self.implicit.append((src_task['uid'], dst_task['uid']))

    def link_explicit_data_deps(self, src_task=None, dst_task=None, file_name=None,
                                file_path=None):
        self.explicit.append((src_task and src_task['uid'], dst_task['uid'], file_name))

    def submit_tasks(self, tasks):          # a plain method: the adapter accepts both
        for task in tasks:
            thread = threading.Thread(target=self._run, args=(task,))
            self.threads.append(thread)
            thread.start()

    def _run(self, task):
        states = self.get_task_states_map()
        self.task_state_cb(task, states.RUNNING)
        try:
            if task['function'] is not None:
                task['return_value'] = asyncio.run(task['function'](*task['args'],
                                                                    **task['kwargs']))
            else:
                proc = subprocess.run(task['executable'], shell=True, capture_output=True,
                                      text=True, timeout=WAIT)
                task['stdout'], task['stderr'] = proc.stdout, proc.stderr
                if proc.returncode:
                    self.task_state_cb(task, states.FAILED)
                    return
        except Exception as exc:
            task['exception'] = exc
            self.task_state_cb(task, states.FAILED)
            return
        if task['uid'] in self.cancelled:
            self.task_state_cb(task, states.CANCELED)
        else:
            self.task_state_cb(task, states.DONE)

    async def cancel_task(self, uid):
        self.cancelled.add(uid)
        return True

    async def shutdown(self):
        self.stopped = True

    def state(self):
        return 'STOPPED' if self.stopped else 'RUNNING'
