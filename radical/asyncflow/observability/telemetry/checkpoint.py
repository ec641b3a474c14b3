"""Where telemetry goes besides the OpenTelemetry providers: the JSONL
checkpoint file, OTLP JSON, and the local node's resource readings."""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from typing import Any, Callable, Dict, IO, Iterable, List, Optional

from .events import RESOURCE_UPDATE, TelemetryEvent

#: Event lines are written in batches of this many (and at each checkpoint).
EVENT_BATCH = 500


def checkpoint_file(directory: str, session_id: str, started: float) -> str:
    """``<directory>/<session_id>.<start, whole seconds>.telemetry.jsonl`` (upstream's name)."""
    return os.path.join(directory, f'{session_id}.{int(started)}.telemetry.jsonl')


def span_record(span: Any) -> Dict[str, Any]:
    """A finished SDK span as a ``"section": "span"`` line."""
    start, end = span.start_time, span.end_time
    return {
        'name': span.name,
        'span_id': hex(span.context.span_id),
        'trace_id': hex(span.context.trace_id),
        'parent_span_id': hex(span.parent.span_id) if span.parent else None,
        'start_ns': start, 'end_ns': end,
        'start_time_s': start / 1e9 if start else None,
        'end_time_s': end / 1e9 if end else None,
        'duration_ms': (end - start) / 1e6 if start and end else None,
        'status_code': span.status.status_code.name,
        'status_description': span.status.description,
        'attributes': dict(span.attributes or {}),
    }


def metric_record(data: Any) -> Dict[str, Any]:
    """A metrics snapshot as a ``"section": "metric"`` line: each metric's sum
    over its data points (a histogram as ``<name>_count`` and ``<name>_sum``)."""
    out: Dict[str, Any] = {'checkpoint_time': time.time()}
    for resource_metrics in getattr(data, 'resource_metrics', None) or ():
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                points = list(metric.data.data_points)
                if not points:
                    continue
                if hasattr(points[0], 'value'):
                    out[metric.name] = sum(p.value for p in points)
                else:
                    out[f'{metric.name}_count'] = sum(p.count for p in points)
                    out[f'{metric.name}_sum'] = sum(p.sum for p in points)
    return out


class Checkpoint:
    """The JSONL file: event lines as they come (in batches), and the metric
    and span lines at each checkpoint.  Each checkpoint repeats the spans
    finished so far, as upstream's does: a reader keeps one per ``span_id``."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
        self.path = path
        self._file: Optional[IO[str]] = open(path, 'w', encoding='utf-8', buffering=1 << 17)
        self._pending: List[Dict[str, Any]] = []

    def event(self, record: Dict[str, Any]) -> None:
        """Keep an event line; written with the next batch."""
        self._pending.append(record)
        if len(self._pending) >= EVENT_BATCH:
            self.flush_events()

    def flush_events(self) -> None:
        """Write the event lines kept so far."""
        pending, self._pending = self._pending, []
        if self._file is not None:
            for record in pending:
                self._line('event', record)

    def snapshot(self, metrics: Any, spans: Iterable[Any]) -> None:
        """Events so far, a metric line and a line per finished span."""
        self.flush_events()
        if self._file is None:
            return
        self._line('metric', metric_record(metrics))
        for span in spans:
            self._line('span', span_record(span))
        self._file.flush()

    def close(self) -> None:
        """Write what is pending and close the file."""
        self.flush_events()
        handle, self._file = self._file, None
        if handle is not None:
            handle.close()

    def _line(self, section: str, record: Dict[str, Any]) -> None:
        record['section'] = section
        assert self._file is not None
        self._file.write(json.dumps(record, default=str) + '\n')


def otlp_json(spans: Iterable[Any]) -> Dict[str, Any]:
    """Finished SDK spans as OTLP/JSON (``{"resourceSpans": [...]}``), grouped by resource."""
    groups: Dict[int, Any] = {}
    for span in spans:
        entry = groups.setdefault(id(span.resource), (span.resource, []))
        entry[1].append(span)
    out = []
    for resource, members in groups.values():
        out.append({
            'resource': {'attributes': _attributes(resource.attributes)},
            'scopeSpans': [{'scope': {'name': 'radical.asyncflow'},
                            'spans': [_otlp_span(s) for s in members]}]})
    return {'resourceSpans': out}


def _otlp_span(span: Any) -> Dict[str, Any]:
    code = span.status.status_code.name
    return {
        'traceId': f'{span.context.trace_id:032x}',
        'spanId': f'{span.context.span_id:016x}',
        'parentSpanId': f'{span.parent.span_id:016x}' if span.parent else '',
        'name': span.name,
        'kind': 1,                                     # SPAN_KIND_INTERNAL
        'startTimeUnixNano': str(span.start_time),
        'endTimeUnixNano': str(span.end_time),
        'attributes': _attributes(span.attributes or {}),
        'events': [{'timeUnixNano': str(e.timestamp), 'name': e.name,
                    'attributes': _attributes(e.attributes or {})} for e in span.events],
        'status': {'code': {'UNSET': 0, 'OK': 1, 'ERROR': 2}[code],
                   **({'message': span.status.description} if span.status.description else {})},
    }


def _attributes(attributes: Any) -> List[Dict[str, Any]]:
    return [{'key': key, 'value': _value(value)} for key, value in dict(attributes).items()]


def _value(value: Any) -> Dict[str, Any]:
    if isinstance(value, bool):
        return {'boolValue': value}
    if isinstance(value, int):
        return {'intValue': str(value)}
    if isinstance(value, float):
        return {'doubleValue': value}
    if isinstance(value, (list, tuple)):
        return {'arrayValue': {'values': [_value(v) for v in value]}}
    return {'stringValue': str(value)}


class ResourcePoller:
    """Reads this node's CPU and memory use every ``interval`` seconds, in a
    daemon thread (``emit_from_thread`` gets those readings; ``emit``, on the
    caller's thread, the first and the last)."""

    def __init__(self, interval: float, session_id: str, backend: str,
                 emit: Callable[[TelemetryEvent], None],
                 emit_from_thread: Callable[[TelemetryEvent], None]) -> None:
        import psutil
        self._psutil = psutil
        self._interval = max(float(interval), 0.05)
        self._session, self._backend = session_id, backend
        self._emit, self._emit_from_thread = emit, emit_from_thread
        self.node_id = socket.gethostname()
        self._stop = threading.Event()
        psutil.cpu_percent(None)                  # the first reading starts the interval
        self._thread = threading.Thread(target=self._run, name='asyncflow-telemetry-poll',
                                        daemon=True)

    def start(self) -> None:
        """Take a reading now and one per interval until :meth:`stop`."""
        self.poll(self._emit)
        self._thread.start()

    def poll(self, emit: Callable[[TelemetryEvent], None]) -> None:
        """One reading of the node, handed to ``emit``."""
        memory = self._psutil.virtual_memory()
        emit(TelemetryEvent(
            event_type=RESOURCE_UPDATE, event_time=time.time(), session_id=self._session,
            backend=self._backend, node_id=self.node_id, resource_scope='per_node',
            cpu_percent=self._psutil.cpu_percent(None), memory_percent=memory.percent))

    def stop(self) -> None:
        """Stop polling (after one last reading)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(self._interval + 5)
        self.poll(self._emit)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.poll(self._emit_from_thread)
            except Exception:          # a reading that fails must not end the polling
                continue
