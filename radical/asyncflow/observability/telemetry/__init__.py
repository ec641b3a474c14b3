"""OpenTelemetry for a run: ``telemetry = await engine.start_telemetry(...)``.

Spans (``session`` → ``workflow`` → ``block`` → ``task``), task lifecycle
events, task and node metrics and a JSONL checkpoint file, in upstream's
names and shapes (radical.asyncflow 0.4-0.6), on the OpenTelemetry SDK
(``pip install 'radical.asyncflow[telemetry]'``).  Nothing here is imported
until a program starts telemetry.
"""

from __future__ import annotations

from .events import TelemetryEvent
from .manager import TelemetryManager

__all__ = ['TelemetryEvent', 'TelemetryManager']
