"""The telemetry of one engine, on the OpenTelemetry SDK.

:class:`TelemetryManager` is the engine's run watcher (see
:class:`~radical.asyncflow.core.interfaces.RunWatcher`): it hears of every
component as the run observer does and turns it into upstream's spans
(``session`` → ``workflow`` → ``block`` → ``task``), events (TaskCreated …
TaskCanceled, to subscribers and the JSONL file) and metrics.  Times are the
moments the engine saw the changes, not when telemetry processed them:
nothing is queued in between.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from ...core.graph import NodeState
from ...core.records import BLOCK, BLOCK_CHAIN
from . import events as ev
from .checkpoint import Checkpoint, ResourcePoller, checkpoint_file, otlp_json
from .events import TelemetryEvent

_COUNTERS = ('tasks_submitted', 'tasks_started', 'tasks_completed', 'tasks_failed',
             'tasks_canceled')
#: Task states and the event, the span's ``status`` and the counter each ends with.
_ENDINGS = {NodeState.DONE: (ev.TASK_COMPLETED, 'completed', 'tasks_completed'),
            NodeState.FAILED: (ev.TASK_FAILED, 'failed', 'tasks_failed'),
            NodeState.CANCELED: (ev.TASK_CANCELED, 'canceled', 'tasks_canceled')}


class _Track:
    """What telemetry keeps of a component until it finishes."""

    __slots__ = ('span', 'submitted', 'running', 'resolved')

    def __init__(self, span: Any) -> None:
        self.span = span
        self.submitted: Optional[float] = None
        self.running: Optional[float] = None
        self.resolved = False


class TelemetryManager:
    """Spans, events and metrics of one engine's run; made by
    ``await engine.start_telemetry(...)``, stopped by ``await manager.stop()``
    or by the engine's shutdown, whichever comes first."""

    def __init__(self, *, session_id: str, backend: str, loop: asyncio.AbstractEventLoop,
                 log: Any, detach: Callable[[], None], resource_poll_interval: float = 5.0,
                 checkpoint_interval: Optional[float] = None,
                 checkpoint_path: Optional[str] = None,
                 span_processors: Optional[Sequence[Any]] = None,
                 metric_readers: Optional[Sequence[Any]] = None,
                 resource: Any = None) -> None:
        from opentelemetry import trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from opentelemetry.trace import Status, StatusCode

        self._trace, self._status, self._code = trace, Status, StatusCode
        self._session_id, self._backend, self._loop, self._log = session_id, backend, loop, log
        self._detach = detach
        if resource is None:
            wanted = {'session_id': session_id}
            if not os.environ.get('OTEL_SERVICE_NAME'):    # the environment's name wins
                wanted['service.name'] = 'radical.asyncflow'
            resource = Resource.create(wanted)
        self._spans = InMemorySpanExporter()
        self._tracer_provider = TracerProvider(resource=resource)
        self._tracer_provider.add_span_processor(SimpleSpanProcessor(self._spans))
        for processor in span_processors or ():
            self._tracer_provider.add_span_processor(processor)
        self._tracer = self._tracer_provider.get_tracer('radical.asyncflow')
        self._metric_reader = InMemoryMetricReader()
        self._meter_provider = MeterProvider(
            metric_readers=[self._metric_reader, *(metric_readers or ())], resource=resource)
        meter = self._meter_provider.get_meter('radical.asyncflow')
        # No task_id among metric attributes: one time series per task would
        # swamp whatever stores them.
        self._attrs = {'session_id': session_id, 'backend': backend}
        # The counts are kept here and read by the SDK when it collects: a task
        # pays an integer increment, not an SDK measurement, per count.
        from opentelemetry.metrics import Observation
        self._totals = dict.fromkeys(_COUNTERS + ('tasks_running',), 0)
        for name in _COUNTERS:
            meter.create_observable_counter(name, callbacks=[self._observe(name, Observation)])
        meter.create_observable_up_down_counter(
            'tasks_running', callbacks=[self._observe('tasks_running', Observation)])
        self._durations = meter.create_histogram('task_duration_seconds', unit='s')
        self._node_last: Dict[tuple, float] = {}
        for name in ('cpu', 'memory'):
            meter.create_observable_up_down_counter(
                f'node_{name}_utilization', unit='%',
                callbacks=[self._observe_nodes(name, Observation)])
        self._subscribers: List[Callable[[TelemetryEvent], Any]] = []
        #: Whether anyone reads events (subscribers, the file): if not, they
        #: are only counted, never built.
        self._listened = checkpoint_path is not None
        self._tracks: Dict[str, _Track] = {}
        self._workflows: Dict[str, List[Any]] = {}      # id -> [span, last end (ns)]
        #: Events per type, and the latest resource reading per node.
        self.event_counts: Dict[str, int] = {}
        self._resources: Dict[str, TelemetryEvent] = {}
        self._started = time.time()
        self._ended: Optional[float] = None
        self._final_metrics: Any = None
        self._session = self._tracer.start_span(
            'session', attributes={'session_id': session_id, 'backend': backend},
            start_time=time.time_ns())
        self._session_context = trace.set_span_in_context(self._session)
        self._checkpoint = (Checkpoint(checkpoint_file(checkpoint_path, session_id,
                                                       self._started))
                            if checkpoint_path is not None else None)
        self._interval = checkpoint_interval
        self._timer: Any = None
        self._poller = ResourcePoller(resource_poll_interval, session_id, backend, self.emit,
                                      self._emit_from_thread)

    # ------------------------------------------------------------- the API

    @property
    def session_id(self) -> str:
        """The engine's uid."""
        return self._session_id

    @property
    def checkpoint_path(self) -> Optional[str]:
        """The JSONL file, if one is written."""
        return self._checkpoint.path if self._checkpoint is not None else None

    def start(self) -> None:
        """Open the session: its event, the first resource reading, the timer."""
        self.emit(self._event(ev.SESSION_STARTED))
        self._poller.start()
        if self._interval:
            self._timer = self._loop.call_later(self._interval, self._tick)

    async def stop(self) -> None:
        """End the session: its spans, the last checkpoint, the providers (which
        flush the span processors given, e.g. an OTLP exporter).  Idempotent."""
        self._stop()

    def subscribe(self, callback: Callable[[TelemetryEvent], Any]) -> None:
        """Call ``callback(event)`` for every event from now on (a coroutine
        function's coroutines run as tasks of the loop)."""
        self._subscribers.append(callback)
        self._listened = True

    def emit(self, event: TelemetryEvent) -> None:
        """Deliver an event to the subscribers and the checkpoint file."""
        kind = event.event_type
        self.event_counts[kind] = self.event_counts.get(kind, 0) + 1
        if kind == ev.RESOURCE_UPDATE:
            self._resource(event)
        for callback in self._subscribers:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    asyncio.ensure_future(result, loop=self._loop)
            except Exception as exc:         # a subscriber's bug must not stop the run
                self._log.warning('telemetry subscriber %r failed: %s', callback, exc)
        if self._checkpoint is not None:
            record = event.record()
            track = self._tracks.get(event.task_id) if event.task_id else None
            span = track.span if track is not None else self._session
            context = span.get_span_context()
            record.update(name=kind, trace_id=hex(context.trace_id),
                          span_id=hex(context.span_id))
            self._checkpoint.event(record)

    def read_traces(self) -> tuple:
        """Every finished span (the SDK's ``ReadableSpan``)."""
        return self._spans.get_finished_spans()

    def read_metrics(self) -> Any:
        """The metrics now (the SDK's ``MetricsData``; after stop: the last)."""
        if self._final_metrics is not None:
            return self._final_metrics
        return self._metric_reader.get_metrics_data()

    def task_count(self) -> Dict[str, int]:
        """Tasks submitted (attempts), completed, failed, canceled and running."""
        totals = _metric_sums(self.read_metrics())
        return {name: int(totals.get(metric, 0)) for name, metric in (
            ('submitted', 'tasks_submitted'), ('completed', 'tasks_completed'),
            ('failed', 'tasks_failed'), ('canceled', 'tasks_canceled'),
            ('running', 'tasks_running'))}

    def task_spans(self) -> List[Dict[str, Any]]:
        """One plain dict per finished task span."""
        out = []
        for span in self.read_traces():
            if span.name != 'task':
                continue
            attrs = dict(span.attributes or {})
            item = {key: attrs.get(key) for key in ('task_id', 'backend', 'executable',
                                                    'task_type', 'status')}
            item.update(duration_seconds=round((span.end_time - span.start_time) / 1e9, 6),
                        span_id=hex(span.context.span_id),
                        trace_id=hex(span.context.trace_id))
            for key in ('error_type', 'incomplete_lifecycle'):
                if key in attrs:
                    item[key] = attrs[key]
            out.append(item)
        return out

    def session_duration(self) -> float:
        """Seconds from start to stop (to now while it runs)."""
        return round((self._ended or time.time()) - self._started, 6)

    def summary(self) -> Dict[str, Any]:
        """Counts, task duration statistics, the session's duration and the latest
        resource reading per node: a plain dict."""
        durations = [s['duration_seconds'] for s in self.task_spans()
                     if not s.get('incomplete_lifecycle')]
        stats = {} if not durations else {
            'total_seconds': round(sum(durations), 6),
            'mean_seconds': round(sum(durations) / len(durations), 6),
            'min_seconds': round(min(durations), 6), 'max_seconds': round(max(durations), 6)}
        return {'session_id': self._session_id, 'duration_seconds': self.session_duration(),
                'tasks': self.task_count(), 'duration': stats,
                'resources': {key: {k: v for k, v in e.record().items() if k in (
                    'backend', 'node_id', 'cpu_percent', 'memory_percent')}
                    for key, e in self._resources.items()}}

    def export_as_otlp(self, path: Optional[str] = None) -> str:
        """The finished spans as OTLP/JSON (what Jaeger and Tempo import); also
        written to ``path`` if given."""
        import json
        text = json.dumps(otlp_json(self.read_traces()))
        if path is not None:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with open(path, 'w', encoding='utf-8') as handle:
                handle.write(text)
        return text

    # ----------------------------------------------- the engine's watcher

    def created(self, record: Any) -> None:
        """A new task or block: its span starts; a task's TaskCreated."""
        now = time.time_ns()
        chain = BLOCK_CHAIN.get()
        parent = self._tracks.get(chain[-1].uid) if chain else None
        if parent is not None:
            context = self._trace.set_span_in_context(parent.span)
        elif record.workflow_id is not None:
            context = self._workflow_context(record.workflow_id, now)
        else:
            context = self._session_context
        spec = record.spec
        if spec.kind is BLOCK:
            attrs = {'session_id': self._session_id, 'asyncflow.workflow_id': record.uid,
                     'task_id': record.uid, 'name': spec.name}
            self._tracks[record.uid] = _Track(self._tracer.start_span(
                'block', context=context, attributes=attrs, start_time=now))
            return
        task_type = spec.task_type.value if spec.task_type is not None else ''
        attrs = {'session_id': self._session_id, 'backend': self._backend,
                 'task_id': record.uid, 'executable': spec.name, 'task_type': task_type}
        if record.workflow_id is not None:
            attrs['asyncflow.workflow_id'] = record.workflow_id
        track = self._tracks[record.uid] = _Track(self._tracer.start_span(
            'task', context=context, attributes=attrs, start_time=now))
        event_attrs = None
        if self._listened:
            event_attrs = {'executable': spec.name, 'task_type': task_type,
                           'depends_on': [d.uid for d in record.dependencies or ()]}
            if record.workflow_id is not None:
                event_attrs['asyncflow.workflow_id'] = record.workflow_id
        self._tell(ev.TASK_CREATED, record.uid, now, event_attrs)
        if record.state is NodeState.READY:
            track.resolved = True
            self._tell(ev.TASK_RESOLVED, record.uid, now)

    def submitted(self, records: List[Any]) -> None:
        """Tasks handed to a backend: TaskQueued and TaskSubmitted."""
        now = time.time_ns()
        tell, tracks, count = self._tell, self._tracks, 0
        for record in records:
            track = tracks.get(record.uid)
            if track is None:
                continue
            count += 1
            track.submitted = now
            track.span.add_event(ev.TASK_QUEUED, timestamp=now)
            tell(ev.TASK_QUEUED, record.uid, now)
            tell(ev.TASK_SUBMITTED, record.uid, now)
        self._totals['tasks_submitted'] += count

    def changed(self, record: Any, old: NodeState, new: NodeState) -> None:
        """A task or block changed state: events, metrics, the end of its span."""
        track = self._tracks.get(record.uid)
        if track is None:
            return
        now = time.time_ns()
        if record.spec.kind is BLOCK:
            if new in _ENDINGS:
                self._end(record, track, new, now)
            return
        totals = self._totals
        if old is NodeState.RUNNING:
            totals['tasks_running'] -= 1
        if new is NodeState.RUNNING:
            track.running = now
            totals['tasks_started'] += 1
            totals['tasks_running'] += 1
            self._tell(ev.TASK_STARTED, record.uid, now)
        elif new is NodeState.READY:
            track.running = None               # a retry: the next attempt's times count
            if not track.resolved:
                track.resolved = True
                self._tell(ev.TASK_RESOLVED, record.uid, now)
        elif new in _ENDINGS:
            self._end(record, track, new, now)

    def run_ended(self, summary: Dict[str, Any]) -> None:
        """The engine stopped: so does its telemetry."""
        self._stop()

    # ------------------------------------------------------------ internals

    def _end(self, record: Any, track: _Track, state: NodeState, now: int) -> None:
        del self._tracks[record.uid]
        kind, status, counter = _ENDINGS[state]
        span = track.span
        span.set_attribute('status', status)
        error_type = None
        if state is NodeState.FAILED:
            future = record.future
            error = future.exception() if future is not None and future.done() \
                and not future.cancelled() else None
            error_type = type(error).__name__ if error is not None else 'unknown'
            span.set_attribute('error_type', error_type)
            span.set_status(self._status(self._code.ERROR, error_type))
        elif state is NodeState.CANCELED:
            span.set_status(self._status(self._code.ERROR, 'canceled'))
        else:
            span.set_status(self._status(self._code.OK))
        if track.running is None and record.spec.kind is not BLOCK:
            span.set_attribute('incomplete_lifecycle', True)      # never seen running
        span.end(end_time=now)
        if record.workflow_id is not None and record.workflow_id in self._workflows:
            self._workflows[record.workflow_id][1] = now
        if record.spec.kind is BLOCK:
            return
        begun = track.running or track.submitted
        seconds = (now - begun) / 1e9 if begun is not None else 0.0
        self._totals[counter] += 1
        self._durations.record(seconds, self._attrs)
        self._tell(kind, record.uid, now, duration_seconds=seconds, error_type=error_type)

    def _workflow_context(self, workflow_id: str, now: int) -> Any:
        entry = self._workflows.get(workflow_id)
        if entry is None:
            span = self._tracer.start_span(
                'workflow', context=self._session_context, start_time=now,
                attributes={'session_id': self._session_id,
                            'asyncflow.workflow_id': workflow_id})
            entry = self._workflows[workflow_id] = [span, now]
        return self._trace.set_span_in_context(entry[0])

    def _tell(self, kind: str, task_id: str, now: int,
              attributes: Optional[Dict[str, Any]] = None, **fields: Any) -> None:
        """A task event: built and emitted if anyone listens, else only counted."""
        if self._listened:
            self.emit(self._event(kind, task_id, now, attributes, **fields))
        else:
            counts = self.event_counts
            counts[kind] = counts.get(kind, 0) + 1

    def _observe(self, name: str, observation: Any) -> Callable[[Any], List[Any]]:
        totals, attrs = self._totals, self._attrs
        return lambda options: [observation(totals[name], attrs)]

    def _observe_nodes(self, name: str, observation: Any) -> Callable[[Any], List[Any]]:
        def read(options: Any) -> List[Any]:
            return [observation(value, {**self._attrs, 'node_id': node})
                    for (kind, node), value in self._node_last.items() if kind == name]
        return read

    def _event(self, kind: str, task_id: Optional[str] = None, now: Optional[int] = None,
               attributes: Optional[Dict[str, Any]] = None, **fields: Any) -> TelemetryEvent:
        return TelemetryEvent(event_type=kind, session_id=self._session_id,
                              backend=self._backend, task_id=task_id,
                              event_time=(now / 1e9) if now is not None else time.time(),
                              attributes=attributes or {}, **fields)

    def _emit_from_thread(self, event: TelemetryEvent) -> None:
        if self._ended is None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.emit, event)

    def _resource(self, event: TelemetryEvent) -> None:
        """Keep the latest reading (what the node gauges report)."""
        self._resources[f'{event.backend}/{event.node_id}'] = event
        for name, value in (('cpu', event.cpu_percent), ('memory', event.memory_percent)):
            if value is not None:
                self._node_last[(name, event.node_id)] = value

    def _tick(self) -> None:
        self._timer = None
        if self._ended is not None:
            return
        try:
            if self._checkpoint is not None:
                self._checkpoint.snapshot(self.read_metrics(), self.read_traces())
        except Exception as exc:
            self._log.warning('telemetry checkpoint failed: %s', exc)
        self._timer = self._loop.call_later(self._interval, self._tick)

    def _stop(self) -> None:
        if self._ended is not None:
            return
        self._detach()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._poller.stop()
        now = time.time_ns()
        for uid, track in list(self._tracks.items()):    # unfinished: ended as they are
            track.span.set_attribute('incomplete_lifecycle', True)
            track.span.end(end_time=now)
            del self._tracks[uid]
        for span, last in self._workflows.values():
            span.end(end_time=last)
        self._ended = time.time()
        self.emit(self._event(ev.SESSION_ENDED, duration_seconds=self._ended - self._started))
        self._session.end(end_time=now)
        self._final_metrics = self._metric_reader.get_metrics_data()
        if self._checkpoint is not None:
            self._checkpoint.snapshot(self._final_metrics, self.read_traces())
            self._checkpoint.close()
        self._tracer_provider.shutdown()
        self._meter_provider.shutdown()


def _metric_sums(data: Any) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for resource_metrics in getattr(data, 'resource_metrics', None) or ():
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                points = list(metric.data.data_points)
                if points and hasattr(points[0], 'value'):
                    out[metric.name] = sum(p.value for p in points)
    return out
