"""The dict views older programs read: made at the boundary, from the typed records.

``engine.components[uid]`` is ``{'future', 'description', 'type'}`` with the
task dict of the dict protocol as its description; engine subclasses that
override ``handle_task_success``/``handle_task_failure`` receive the same
dict.  Each view is made anew when asked for: the records stay the state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Iterator

from ..backends.execution.spec import TaskType
from .records import ComponentRecord


def task_dict(record: ComponentRecord) -> Dict[str, Any]:
    """The task dict of the dict protocol for ``record`` (a new dict)."""
    spec = record.spec
    attempt = record.attempt
    running = attempt.spec if attempt is not None else None
    inputs, outputs = record.files or ((), ())
    return {
        'uid': record.uid,
        'name': spec.name,
        'function': spec.func if spec.task_type is not TaskType.EXECUTABLE else None,
        'executable': running.command if running is not None else None,
        'prompt': running.prompt if running is not None else None,
        'args': (running.args if running is not None else record.args) or (),
        'kwargs': dict(running.kwargs if running is not None else record.kwargs or {}),
        'is_service': spec.is_service,
        'async': True,
        'attempt': running.attempt if running is not None else 1,
        'metadata': {'input_files': list(inputs), 'output_files': list(outputs)},
        'task_backend_specific_kwargs': dict(record.options),
        'workflow_id': record.workflow_id,
        'backend': record.route.name if record.route is not None else None,
    }


class ComponentsView(Mapping):
    """``engine.components``: uid -> {'future', 'description', 'type'}."""

    def __init__(self, records: Dict[str, ComponentRecord]) -> None:
        self._records = records

    def __getitem__(self, uid: str) -> Dict[str, Any]:
        rec = self._records[uid]
        return {'future': rec.future, 'description': task_dict(rec), 'type': rec.spec.kind}

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)
