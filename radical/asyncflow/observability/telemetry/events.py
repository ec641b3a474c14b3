"""The telemetry events: what a subscriber gets and the JSONL file holds.

The names and fields are upstream's (radical.asyncflow 0.6 on rhapsody-py's
telemetry), so that tools reading its checkpoint files read ours: every
event has ``event_id``, ``event_type``, ``event_time``, ``emit_time``,
``session_id`` (the engine's uid), ``backend``, ``task_id``, ``node_id`` and
``attributes``; a few kinds add fields of their own (``duration_seconds``,
``error_type``, the resource readings).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

SESSION_STARTED = 'SessionStarted'
SESSION_ENDED = 'SessionEnded'
TASK_CREATED = 'TaskCreated'
#: Every dependency of the task succeeded (at creation when it has none).
TASK_RESOLVED = 'asyncflow.TaskResolved'
TASK_QUEUED = 'TaskQueued'
TASK_SUBMITTED = 'TaskSubmitted'
TASK_STARTED = 'TaskStarted'
TASK_COMPLETED = 'TaskCompleted'
TASK_FAILED = 'TaskFailed'
TASK_CANCELED = 'TaskCanceled'
RESOURCE_UPDATE = 'ResourceUpdate'

#: The fields only some kinds carry; left out of a record when unset.
EXTRA_FIELDS = ('duration_seconds', 'error_type', 'cpu_percent', 'memory_percent',
                'gpu_percent', 'gpu_id', 'disk_read_bytes', 'disk_write_bytes',
                'net_sent_bytes', 'net_recv_bytes', 'resource_scope')


@dataclass(frozen=True)
class TelemetryEvent:
    """One thing that happened in a run, as telemetry tells it."""

    event_type: str
    event_time: float
    session_id: str
    backend: str
    task_id: Optional[str] = None
    node_id: Optional[str] = None
    attributes: Dict[str, Any] = field(default_factory=dict)
    duration_seconds: Optional[float] = None
    error_type: Optional[str] = None
    cpu_percent: Optional[float] = None
    memory_percent: Optional[float] = None
    gpu_percent: Optional[float] = None
    gpu_id: Optional[int] = None
    disk_read_bytes: Optional[float] = None
    disk_write_bytes: Optional[float] = None
    net_sent_bytes: Optional[float] = None
    net_recv_bytes: Optional[float] = None
    resource_scope: Optional[str] = None
    event_id: str = field(default_factory=lambda: os.urandom(16).hex())   # as uuid4().hex
    emit_time: float = field(default_factory=time.time)

    def record(self) -> Dict[str, Any]:
        """The event as a JSON-ready dict (the fields it carries)."""
        out: Dict[str, Any] = {
            'event_id': self.event_id, 'event_type': self.event_type,
            'event_time': self.event_time, 'emit_time': self.emit_time,
            'session_id': self.session_id, 'backend': self.backend,
            'task_id': self.task_id, 'node_id': self.node_id,
            'attributes': dict(self.attributes)}
        for name in EXTRA_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out
