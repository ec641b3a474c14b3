"""engine.start_telemetry(): real OpenTelemetry SDK spans, events, metrics and
the JSONL checkpoint, checked against the run summary of the same run.

One run is made per module (failures, a retried task, a cancellation,
blocks and a workflow scope); the OTLP test sends spans over HTTP to a
receiver the test runs in a thread (no collector installs from the
registries here: see docs/observability.md).  Cost: about 5 s.
"""

import asyncio
import json
import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from radical.asyncflow import ConcurrentExecutionBackend, WorkflowEngine
from radical.asyncflow.errors import UsageStateError

TASK_EVENTS = ('TaskCreated', 'asyncflow.TaskResolved', 'TaskQueued', 'TaskSubmitted',
               'TaskStarted', 'TaskCompleted', 'TaskFailed', 'TaskCanceled')


@pytest.fixture(autouse=True)
def quiet(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('RADICAL_ASYNCFLOW_PROGRESS', '0')


async def _run(work_dir, **telemetry_args):
    """Failures (one own, two of its dependents), a task that succeeds on its third
    attempt, a cancelled task, two blocks and a workflow scope."""
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter, reader = InMemorySpanExporter(), InMemoryMetricReader()
    backend = await ConcurrentExecutionBackend(ThreadPoolExecutor(4))
    engine = await WorkflowEngine.create(backend=backend, work_dir=work_dir, progress=False)
    seen = []
    telemetry = await engine.start_telemetry(
        resource_poll_interval=0.2, checkpoint_interval=0.2, checkpoint_path=work_dir,
        span_processors=[SimpleSpanProcessor(exporter), *telemetry_args.get('processors', ())],
        metric_readers=[reader])
    telemetry.subscribe(seen.append)
    tries = []

    @engine.function_task
    async def fine(i):
        return i

    @engine.function_task
    async def broken():
        raise ValueError('bad input')

    @engine.function_task
    async def after(value):
        return value

    @engine.function_task(retries=2, retry_backoff=0)
    async def flaky():
        tries.append(1)
        if len(tries) < 3:
            raise RuntimeError(f'attempt {len(tries)} fails')
        return 'third'

    @engine.function_task
    async def parked():
        await asyncio.sleep(60)

    @engine.block
    async def pair(i):
        return await fine(i) + await fine(i + 1)

    async with engine.workflow_scope('ensemble-1'):
        ensemble = [fine(i) for i in range(3)]
    bad = broken()
    dependents = [after(bad), after(bad)]
    cancelled = parked()
    await asyncio.gather(*ensemble, flaky(), pair(10), pair(20), fine(99))
    for future in (bad, *dependents):
        with pytest.raises(Exception):
            await future
    cancelled.cancel()
    await engine.shutdown()
    return engine, telemetry, exporter, reader, seen


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    work_dir = str(tmp_path_factory.mktemp('telemetry'))
    engine, telemetry, exporter, reader, seen = asyncio.run(_run(work_dir))
    with open(os.path.join(engine.run_dir, 'asyncflow_summary.json')) as handle:
        summary = json.load(handle)
    return dict(engine=engine, telemetry=telemetry, spans=exporter.get_finished_spans(),
                reader=reader, seen=seen, summary=summary, work_dir=work_dir)


def _count(events, kind):
    return sum(1 for e in events if e.event_type == kind)


def test_events_agree_with_the_summary(run):
    states, seen = run['summary']['task_states'], run['seen']
    tasks = run['summary']['tasks']
    assert states['FAILED'] == 3 and states['CANCELED'] == 1 and run['summary']['blocks'] == 2
    assert _count(seen, 'TaskCreated') == tasks
    assert _count(seen, 'TaskCompleted') == states['DONE']
    assert _count(seen, 'TaskFailed') == states['FAILED']
    assert _count(seen, 'TaskCanceled') == states['CANCELED']
    # the retried task was submitted three times; dependents of the failure never were
    submitted = _count(seen, 'TaskSubmitted')
    assert submitted == _count(seen, 'TaskQueued') == tasks - 2 + 2   # +2 retries
    assert _count(seen, 'asyncflow.TaskResolved') == tasks - 2
    failed = [e for e in seen if e.event_type == 'TaskFailed']
    assert sorted(e.error_type for e in failed) == ['DependencyFailure'] * 2 + ['ValueError']
    assert seen[-1].event_type == 'SessionEnded'      # (subscribed after SessionStarted)
    assert _count(seen, 'ResourceUpdate') >= 1          # the last reading, at stop
    assert all(e.session_id == run['engine'].uid for e in seen)


def test_span_hierarchy(run):
    spans = run['spans']
    by_id = {s.context.span_id: s for s in spans}
    names = [s.name for s in spans]
    summary = run['summary']
    assert names.count('session') == 1 and names.count('workflow') == 1
    assert names.count('block') == summary['blocks']
    assert names.count('task') == summary['tasks']
    session = next(s for s in spans if s.name == 'session')
    assert {s.context.trace_id for s in spans} == {session.context.trace_id}

    def parent(span):
        return by_id[span.parent.span_id].name if span.parent else None

    assert parent(session) is None
    workflow = next(s for s in spans if s.name == 'workflow')
    assert workflow.attributes['asyncflow.workflow_id'] == 'ensemble-1'
    in_workflow = [s for s in spans if s.name == 'task'
                   and s.attributes.get('asyncflow.workflow_id') == 'ensemble-1']
    assert len(in_workflow) == 3 and {parent(s) for s in in_workflow} == {'workflow'}
    assert sum(1 for s in spans if s.name == 'task' and parent(s) == 'block') == 4
    status = {}
    for span in spans:
        if span.name == 'task':
            status[span.attributes['status']] = status.get(span.attributes['status'], 0) + 1
    states = summary['task_states']
    assert status == {'completed': states['DONE'], 'failed': states['FAILED'],
                      'canceled': states['CANCELED']}
    errors = [s for s in spans if s.name == 'task' and s.status.status_code.name == 'ERROR']
    assert len(errors) == states['FAILED'] + states['CANCELED']


def test_metrics_and_the_manager_api(run):
    telemetry, states = run['telemetry'], run['summary']['task_states']
    counts = telemetry.task_count()
    assert counts == {'submitted': _count(run['seen'], 'TaskSubmitted'),
                      'completed': states['DONE'], 'failed': states['FAILED'],
                      'canceled': states['CANCELED'], 'running': 0}
    # the metric reader the program gave saw them too
    names = {m.name for rm in run['reader'].get_metrics_data().resource_metrics
             for sm in rm.scope_metrics for m in sm.metrics}
    assert {'tasks_submitted', 'tasks_completed', 'tasks_failed', 'tasks_running',
            'task_duration_seconds', 'node_cpu_utilization'} <= names
    assert len(telemetry.task_spans()) == run['summary']['tasks']
    assert telemetry.summary()['tasks'] == counts
    assert telemetry.session_id == run['engine'].uid and telemetry.session_duration() > 0
    otlp = json.loads(telemetry.export_as_otlp(os.path.join(run['work_dir'], 'otlp.json')))
    assert sum(len(s['spans']) for r in otlp['resourceSpans'] for s in r['scopeSpans']) == \
        len(run['spans'])


def test_jsonl_checkpoint(run):
    engine, summary = run['engine'], run['summary']
    path = run['telemetry'].checkpoint_path
    assert os.path.dirname(path) == run['work_dir']
    assert os.path.basename(path).startswith(f'{engine.uid}.') and \
        path.endswith('.telemetry.jsonl')
    with open(path) as handle:
        lines = [json.loads(line) for line in handle]
    events = [line for line in lines if line['section'] == 'event']
    kinds = [e['event_type'] for e in events]
    assert kinds[0] == 'SessionStarted' and kinds[-1] == 'SessionEnded'
    assert kinds.count('TaskCompleted') == summary['task_states']['DONE']
    assert kinds.count('TaskFailed') == summary['task_states']['FAILED']
    assert kinds.count('TaskCanceled') == summary['task_states']['CANCELED']
    assert all(e['name'] == e['event_type'] and e['trace_id'].startswith('0x') for e in events)
    spans = {line['span_id']: line for line in lines if line['section'] == 'span'}
    assert sum(1 for s in spans.values() if s['name'] == 'task') == summary['tasks']
    metrics = [line for line in lines if line['section'] == 'metric']
    assert metrics                            # the last, at stop (and periodic ones)
    assert metrics[-1]['tasks_completed'] == summary['task_states']['DONE']
    assert metrics[-1]['task_duration_seconds_count'] == \
        sum(summary['task_states'][s] for s in ('DONE', 'FAILED', 'CANCELED'))


def test_stop_is_idempotent_and_a_second_start_is_refused(tmp_path):
    async def main():
        engine = await WorkflowEngine.create(dry_run=True, progress=False,
                                             work_dir=str(tmp_path))
        telemetry = await engine.start_telemetry(resource_poll_interval=60)
        with pytest.raises(UsageStateError, match='telemetry runs already'):
            await engine.start_telemetry()
        await telemetry.stop()
        await telemetry.stop()

        @engine.function_task
        async def later():
            return 1

        await later()                           # after stop: no longer watched
        again = await engine.start_telemetry(resource_poll_interval=60)
        await engine.shutdown()                 # stops it too
        return telemetry, again

    first, again = asyncio.run(main())
    assert first.task_count()['completed'] == 0
    assert again.session_duration() == again.session_duration()       # stopped: fixed


def test_periodic_checkpoints(tmp_path):
    """With checkpoint_interval the file gets metric and span lines while the run goes on."""
    async def main():
        engine = await WorkflowEngine.create(dry_run=True, progress=False,
                                             work_dir=str(tmp_path))
        telemetry = await engine.start_telemetry(resource_poll_interval=60,
                                                 checkpoint_interval=0.05,
                                                 checkpoint_path=str(tmp_path))

        @engine.function_task
        async def step():
            return 1

        await step()
        deadline = asyncio.get_running_loop().time() + 30
        while asyncio.get_running_loop().time() < deadline:
            with open(telemetry.checkpoint_path) as handle:
                sections = [json.loads(line)['section'] for line in handle]
            if 'span' in sections:
                break
            await asyncio.sleep(0.05)
        await engine.shutdown()
        return sections

    sections = asyncio.run(main())
    assert 'metric' in sections and 'span' in sections and 'event' in sections


def test_telemetry_off_imports_nothing():
    code = ('import asyncio, sys\n'
            'from radical.asyncflow import WorkflowEngine\n'
            'async def main():\n'
            '    e = await WorkflowEngine.create(dry_run=True, progress=False)\n'
            '    @e.function_task\n'
            '    async def t(): return 1\n'
            '    await t(); await e.shutdown()\n'
            'asyncio.run(main())\n'
            'print(sorted(m for m in sys.modules if m.startswith("opentelemetry")'
            ' or m.endswith(".telemetry") or ".telemetry." in m))\n')
    out = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip().splitlines()[-1] == '[]'


class _Receiver(BaseHTTPRequestHandler):
    """OTLP/HTTP: ``POST /v1/traces`` with an ExportTraceServiceRequest."""

    def do_POST(self):
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
        body = self.rfile.read(int(self.headers['Content-Length']))
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        self.server.received.append((self.path, self.headers['Content-Type'], request))
        reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header('Content-Type', 'application/x-protobuf')
        self.send_header('Content-Length', str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args):
        pass


def test_spans_go_over_otlp_http(tmp_path):
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    server = ThreadingHTTPServer(('127.0.0.1', 0), _Receiver)
    server.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        exporter = OTLPSpanExporter(endpoint=f'http://127.0.0.1:{server.server_port}/v1/traces')
        engine, telemetry, _, _, _ = asyncio.run(
            _run(str(tmp_path), processors=[BatchSpanProcessor(exporter)]))
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
    assert not thread.is_alive()
    assert server.received and {p for p, _, _ in server.received} == {'/v1/traces'}
    spans, service = [], set()
    for _, content_type, request in server.received:
        assert content_type == 'application/x-protobuf'
        for resource_spans in request.resource_spans:
            service |= {a.value.string_value for a in resource_spans.resource.attributes
                        if a.key == 'service.name'}
            for scope in resource_spans.scope_spans:
                spans.extend(scope.spans)
    assert service == {'radical.asyncflow'}
    assert len(spans) == len(telemetry.read_traces())         # every span arrived
    tasks = [s for s in spans if s.name == 'task']
    assert len(tasks) == engine.summary['tasks']
    ids = {s.span_id for s in spans}
    assert all(s.parent_span_id in ids for s in spans if s.name != 'session')
