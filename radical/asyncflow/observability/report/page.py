"""``report.html``: one self-contained page of a run (see :mod:`.report`).

The page has no script at all, and its Content-Security-Policy forbids
any: a task name or stderr that holds markup is escaped (:func:`esc`), and
were one ever missed, the browser would still not run it.  Charts are
inline SVG with ``<title>`` tooltips.  What cannot be drawn one by one is
aggregated: at most :data:`MAX_BARS` task bars (else the timeline becomes
stacked areas over :data:`TIME_BINS` time bins per lane), and tables are
cut at a stated number of rows, the rest counted.
"""

from __future__ import annotations

import bisect
import heapq
import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import svg
from .data import FINAL_STATES, RunData, TaskRow, _failed_own
from .svg import COLORS, QUEUED_OPACITY, Frame, esc, fmt, seconds
from ..plot import assign_slots

MAX_BARS = 2000
TIME_BINS = 480
MAX_LANES = 32
#: Points of the concurrency lines above which they are reduced to per-bin maxima.
MAX_POINTS = 4000
SLOWEST = 20
FAILED_ROWS = 100
LIST_ROWS = 200
WAIT_BINS = 30

CSP = ("default-src 'none'; style-src 'unsafe-inline'; img-src data:; "
       "base-uri 'none'; form-action 'none'")

STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#212121;background:#fafafa}
main{max-width:980px;margin:0 auto;padding:12px 16px 40px}
h1{font-size:20px;margin:8px 0 2px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #ddd}
.sub{color:#616161;font-size:13px;word-break:break-all}
.status{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:600}
.status.completed{background:#2e7d32}.status.failed,.status.interrupted{background:#c62828}
.status.abandoned,.status.unknown{background:#ef6c00}
table{border-collapse:collapse;margin:6px 0;font-size:13px}
td,th{border:1px solid #e0e0e0;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}
.counts td{min-width:60px}
.chart{display:block;background:#fff;border:1px solid #e0e0e0;max-width:100%;height:auto}
.frame{fill:none;stroke:#9e9e9e}.grid{stroke:#eee}.sep{stroke:#757575;stroke-width:.6}
.tick{font-size:10px;fill:#616161}.label{font-size:11px;fill:#424242}.lane{font-size:10px;fill:#424242}
.bar{fill:#1565c0}.inflight{fill:none;stroke:#1565c0;stroke-width:1.4}
.running{fill:none;stroke:#ef6c00;stroke-width:1.4}.util{fill:none;stroke:#6a1b9a;stroke-width:1.4}
.legend{font-size:12px;margin:4px 0}.legend span{margin-right:14px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
pre{background:#263238;color:#eceff1;padding:6px 8px;overflow:auto;max-height:240px;font-size:12px;margin:4px 0}
.note{color:#616161;font-size:12px}.warn{color:#b71c1c}
details summary{cursor:pointer}
"""


def render(data: RunData) -> str:
    """The whole page."""
    tasks = data.tasks
    parts = [_head(data), _outcome(data, tasks)]
    if not data.has_profile:
        parts.append('<p id="no-profile" class="note">This run was not profiled, so there '
                     'is no timeline: run with <code>profile=True</code>, '
                     '<code>RADICAL_PROFILE=True</code> or under '
                     '<code>radical-asyncflow-run</code> for the rest of this page.</p>')
        parts.append(_failures_by_cause(data.summary.get('failures') or []))
    else:
        parts += [_timeline(data, tasks), _concurrency(data, tasks), _failed(data, tasks),
                  _slowest(tasks), _waiting(tasks), _retries(tasks)]
    parts += [_nodes(data, tasks), _pilots(data)]
    generated = datetime.datetime.now().astimezone().isoformat(timespec='seconds')
    parts.append(f'<p class="note">Written {esc(generated)} by radical-asyncflow-report '
                 f'from {esc(data.run_dir)}.</p></main></body></html>\n')
    return ''.join(p for p in parts if p)


# ---------------------------------------------------------------- header and counts

def _head(data: RunData) -> str:
    summary = data.summary
    name = summary.get('run_dir') or data.run_dir
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
            '<meta name="viewport" content="width=device-width,initial-scale=1">'
            f'<title>radical.asyncflow run {esc(_basename(name))}</title>'
            f'<style>{STYLE}</style></head><body><main>'
            f'<h1>radical.asyncflow run <span id="run-name">{esc(_basename(name))}</span></h1>'
            f'<div class="sub">{esc(name)}</div>')


def _basename(path: str) -> str:
    return path.rstrip('/').rsplit('/', 1)[-1] or path


def _outcome(data: RunData, tasks: List[TaskRow]) -> str:
    summary = data.summary
    outcome = summary.get('outcome') or {}
    status = str(outcome.get('status') or ('unknown' if not summary else 'completed'))
    if summary.get('interrupted_by') and status == 'completed':
        status = 'interrupted'
    from ..monitor import describe_outcome
    said = describe_outcome(outcome) if outcome else (
        'no summary file: the run may still be going, or was killed' if not summary else '')
    counts = summary.get('task_states') or _profile_counts(tasks)
    total = summary.get('tasks', len(tasks))
    unfinished = total - sum(counts.get(s, 0) for s in FINAL_STATES)
    cells = [('tasks', total), ('done', counts.get('DONE', 0)),
             ('failed', counts.get('FAILED', 0)), ('canceled', counts.get('CANCELED', 0)),
             ('unfinished', unfinished), ('blocks', summary.get('blocks', '-'))]
    head = ''.join(f'<th>{name}</th>' for name, _ in cells)
    row = ''.join(f'<td class="n" id="count-{name}">{value}</td>' for name, value in cells)
    facts = [('backend', summary.get('backend', '-')),
             ('started', summary.get('started', '-')),
             ('wall time', seconds(summary.get('wall_time_s'))),
             ('peak concurrency', summary.get('peak_concurrency', '-')),
             ('throughput', f"{summary['throughput_per_s']:g} components/s"
              if summary.get('throughput_per_s') else '-')]
    fact_rows = ''.join(f'<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>' for k, v in facts)
    out = [f'<h2 id="outcome">Outcome</h2><p><span id="status" class="status {esc(status)}">'
           f'{esc(status)}</span> {esc(said) if said != status else ""}</p>',
           f'<table class="counts"><tr>{head}</tr><tr>{row}</tr></table>',
           f'<table>{fact_rows}</table>']
    if data.has_profile and summary.get('task_states'):
        seen = _profile_counts(tasks)
        if any(seen.get(s, 0) != counts.get(s, 0) for s in FINAL_STATES):
            out.append(f'<p id="count-mismatch" class="warn">The profile holds '
                       f'{seen.get("DONE", 0)} done, {seen.get("FAILED", 0)} failed, '
                       f'{seen.get("CANCELED", 0)} canceled tasks: it may be incomplete.</p>')
    return ''.join(out)


def _profile_counts(tasks: List[TaskRow]) -> Dict[str, int]:
    counts: Dict[str, int] = {}
    for task in tasks:
        counts[task.state] = counts.get(task.state, 0) + 1
    return counts


def _table(table_id: str, header: Sequence[str], rows: Sequence[Sequence[str]],
           numeric: Sequence[int] = ()) -> str:
    """A table whose cells are already-escaped HTML."""
    head = ''.join(f'<th>{esc(h)}</th>' for h in header)
    body = ''.join('<tr>' + ''.join(
        f'<td class="n">{c}</td>' if i in numeric else f'<td>{c}</td>'
        for i, c in enumerate(row)) + '</tr>' for row in rows)
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _more(shown: int, total: int, what: str) -> str:
    return f'<p class="note">{shown} of {total} {what} shown.</p>' if total > shown else ''


# ---------------------------------------------------------------- timeline

def _lanes(data: RunData, tasks: Sequence[TaskRow]) -> Tuple[str, Callable[[TaskRow], str]]:
    """What the timeline's rows are grouped by, and each task's group."""
    pilots = data.task_pilot
    if len(set(pilots.values())) > 1:
        return 'pilot and node', lambda t: (f"{pilots.get(t.uid, '-')} "
                                            f"{t.nodes[0] if t.nodes else ''}").strip()
    if any(t.nodes for t in tasks):
        return 'node', lambda t: t.nodes[0] if t.nodes else '-'
    if any(t.workflow for t in tasks):
        return 'workflow', lambda t: t.workflow or '-'
    backend = str(data.summary.get('backend') or 'backend')
    return 'backend', lambda t: backend


class _Bar:
    __slots__ = ('task', 'start', 'end', 'slot')

    def __init__(self, task: TaskRow, start: float, end: float) -> None:
        self.task, self.start, self.end, self.slot = task, start, end, -1


def _timeline(data: RunData, tasks: List[TaskRow]) -> str:
    started = [t for t in tasks if t.start is not None]
    if not started:
        return '<h2 id="timeline">Timeline</h2><p class="note">No task reached a backend.</p>'
    kind, lane_of = _lanes(data, started)
    span = max(data.span, 1e-6)
    states = _profile_counts(started)
    states = {('UNFINISHED' if s not in FINAL_STATES else s): n for s, n in states.items()}
    items = svg.colors_for(states)
    if len(started) <= MAX_BARS:
        chart = _timeline_bars(started, lane_of, span)
        items.append(('rgba(21,101,192,.35)', 'submitted, not yet running'))
        note = (f'One bar per task ({len(started)}), from submission (pale) and the start '
                f'of its run to its end, on rows grouped by {kind}.')
    else:
        chart = _timeline_binned(started, lane_of, span)
        note = (f'{len(started)} tasks: more than {MAX_BARS} to draw one by one, so each '
                f'{kind} shows how many tasks were in its backend at once (mean over '
                f'{TIME_BINS} time bins of {seconds(span / TIME_BINS)}), by final state.')
    return (f'<h2 id="timeline">Timeline by {esc(kind)}</h2>{svg.legend(items)}{chart}'
            f'<p class="note">{esc(note)}</p>')


def _end(task: TaskRow, span: float) -> float:
    return task.end if task.end is not None else span


def _final(task: TaskRow) -> str:
    return task.state if task.state in FINAL_STATES else 'UNFINISHED'


def _timeline_bars(tasks: List[TaskRow], lane_of: Callable[[TaskRow], str], span: float) -> str:
    lanes: Dict[str, List[_Bar]] = {}
    for task in tasks:
        start = task.submitted if task.submitted is not None else task.start
        lanes.setdefault(lane_of(task), []).append(_Bar(task, start, _end(task, span)))
    order = sorted(lanes)
    used = {name: assign_slots(lanes[name]) for name in order}
    rows = sum(used.values())
    height = int(min(max(rows * 14, 60), 640)) + 44
    frame = Frame(span, 1, height, left=130)
    row_h = frame.plot_h / rows
    body = frame.axes('seconds since the run began', '', y_ticks=False)
    lane_marks, first = [], 0
    for name in order:
        top = frame.top + first * row_h
        lane_marks.append((name, top, top + used[name] * row_h))
        for bar in lanes[name]:
            task = bar.task
            y = frame.top + (first + bar.slot) * row_h + row_h * 0.1
            h = fmt(max(row_h * 0.8, 0.5))
            color = COLORS[_final(task)]
            title = (f'{task.name} ({task.uid}): {task.state.lower()}, ran '
                     f'{seconds(task.duration)}, waited {seconds(task.wait)}'
                     + (f', on {";".join(task.nodes)}' if task.nodes else '')
                     + (f', {task.attempts} attempts' if task.attempts > 1 else ''))
            shapes = []
            x_start = frame.x(bar.start)
            run_at = task.start
            if task.running is not None and run_at > bar.start:
                x_run = frame.x(run_at)
                shapes.append(f'<rect x="{fmt(x_start)}" y="{fmt(y)}" width="{fmt(x_run - x_start)}"'
                              f' height="{h}" fill="{color}" opacity="{QUEUED_OPACITY}"/>')
                x_start = x_run
            width = max(frame.x(bar.end) - x_start, 1.0)
            shapes.append(f'<rect x="{fmt(x_start)}" y="{fmt(y)}" width="{fmt(width)}" '
                          f'height="{h}" fill="{color}"/>')
            body.append(f'<g class="task" data-state="{task.state}"><title>{esc(title)}</title>'
                        + ''.join(shapes) + '</g>')
        first += used[name]
    body += svg.lane_labels(frame, lane_marks)
    return svg.svg(height, body, 'task timeline', 'timeline-chart')


def add_interval(bins: List[float], ramps: List[float], start: float, end: float,
                 width: float) -> None:
    """Add the coverage of [start, end) to per-bin sums: partial bins to ``bins``,
    whole ones as +1/-1 marks in ``ramps`` (summed up later)."""
    count = len(bins)
    a, b = start / width, end / width
    first, last = min(int(a), count - 1), min(int(b), count - 1)
    if first == last:
        bins[first] += b - a
        return
    bins[first] += first + 1 - a
    bins[last] += b - last
    if last > first + 1:
        ramps[first + 1] += 1
        ramps[last] -= 1


def binned(rows: Sequence[Tuple[float, float]], span: float, count: int = TIME_BINS) -> List[float]:
    """The mean number of intervals open in each of ``count`` time bins."""
    width = span / count
    bins, ramps = [0.0] * count, [0.0] * (count + 1)
    for start, end in rows:
        add_interval(bins, ramps, start, end, width)
    level = 0.0
    for i in range(count):
        level += ramps[i]
        bins[i] += level
    return bins


def _timeline_binned(tasks: List[TaskRow], lane_of: Callable[[TaskRow], str],
                     span: float) -> str:
    # One pass: per lane, per final state, the (start, end) of its tasks.
    groups: Dict[str, Dict[str, List[Tuple[float, float]]]] = {}
    sizes: Dict[str, int] = {}
    for task in tasks:
        lane = lane_of(task)
        state = task.state if task.state in FINAL_STATES else 'UNFINISHED'
        end = task.end if task.end is not None else span
        groups.setdefault(lane, {}).setdefault(state, []).append((task.start, end))
        sizes[lane] = sizes.get(lane, 0) + 1
    names = sorted(groups, key=lambda n: -sizes[n])
    if len(names) > MAX_LANES:        # the busiest lanes, the rest together
        rest: Dict[str, List[Tuple[float, float]]] = {}
        count = 0
        for name in names[MAX_LANES - 1:]:
            count += sizes[name]
            for state, spans in groups.pop(name).items():
                rest.setdefault(state, []).extend(spans)
        label = f'{count} tasks elsewhere'
        names = sorted(names[:MAX_LANES - 1]) + [label]
        groups[label] = rest
    else:
        names.sort()
    band = int(min(max(480 / len(names), 28), 90))
    height = band * len(names) + 44
    frame = Frame(span, 1, height, left=130)
    body = frame.axes('seconds since the run began', '', y_ticks=False)
    width = span / TIME_BINS
    lane_marks = []
    for i, name in enumerate(names):
        layers = [(COLORS[state], binned(groups[name][state], span))
                  for state in ('DONE', 'FAILED', 'CANCELED', 'UNFINISHED')
                  if groups[name].get(state)]
        peak = max(sum(values) for values in zip(*(v for _, v in layers))) if layers else 1
        top = frame.top + i * band
        base = top + band - 2
        scale = (band - 6) / max(peak, 1e-9)
        body += svg.stacked_areas(frame, width, layers, base, scale)
        lane_marks.append((f'{name} (max {peak:.3g})', top, top + band))
    body += svg.lane_labels(frame, lane_marks)
    return svg.svg(height, body, f'task timeline, {len(tasks)} tasks binned',
                   'timeline-chart').replace(
        '<svg ', f'<svg data-binned-tasks="{len(tasks)}" ', 1)


# ---------------------------------------------------------------- concurrency

def step_series(tasks: Sequence[TaskRow], span: float) -> Tuple[List[Tuple[float, float]],
                                                                List[Tuple[float, float]]]:
    """(in the backend, running) as step points (time, count)."""
    inflight: List[Tuple[float, int]] = []
    running: List[Tuple[float, int]] = []
    for task in tasks:
        end = task.end
        if task.submitted is not None:
            inflight.append((task.submitted, 1))
            if end is not None:
                inflight.append((end, -1))
        if task.running is not None:
            running.append((task.running, 1))
            if end is not None:
                running.append((end, -1))
    return _accumulate(inflight, span), _accumulate(running, span)


def _accumulate(changes: List[Tuple[float, int]], span: float) -> List[Tuple[float, float]]:
    changes.sort()
    points: List[Tuple[float, float]] = [(0.0, 0)]
    level = 0
    for when, delta in changes:
        level += delta
        when = max(when, 0.0)        # RP's records may start before the engine's first event
        if when == points[-1][0]:
            points[-1] = (when, level)
        else:
            points.append((when, level))
    if len(points) > MAX_POINTS:
        points = reduce_steps(points, span)
    return points


def reduce_steps(points: List[Tuple[float, float]], span: float,
                 count: int = TIME_BINS) -> List[Tuple[float, float]]:
    """A step series cut to ``count`` bins, each holding the most it reached in the bin."""
    width = max(span, 1e-9) / count
    out = []
    level = 0.0
    index = 0
    times = [p[0] for p in points]
    for i in range(count):
        high = level
        stop = bisect.bisect_left(times, (i + 1) * width, lo=index)
        for _, value in points[index:stop]:
            high = max(high, value)
            level = value
        index = stop
        out.append((i * width, high))
    return out


def _concurrency(data: RunData, tasks: List[TaskRow]) -> str:
    span = max(data.span, 1e-6)
    inflight, running = step_series(tasks, span)
    peak = max([v for _, v in inflight] + [v for _, v in running] + [1])
    frame = Frame(span, peak * 1.05, 260)
    body = frame.axes('seconds since the run began', 'tasks at once')
    body.append(svg.steps(frame, inflight, 'inflight'))
    if len(running) > 1:
        body.append(svg.steps(frame, running, 'running'))
    items = [('#1565c0', 'in the backend (submitted or running)'), ('#ef6c00', 'running')]
    reduced = (f' Lines of more than {MAX_POINTS} points show the most tasks per time bin '
               f'of {seconds(span / TIME_BINS)}.' if len(inflight) == TIME_BINS else '')
    return ('<h2 id="concurrency">Concurrency</h2>' + svg.legend(items)
            + svg.svg(260, body, 'concurrency over time', 'concurrency-chart')
            + (f'<p class="note">{esc(reduced)}</p>' if reduced else '')
            + _utilisation(data, span))


def _utilisation(data: RunData, span: float) -> str:
    """Cores held over time, as a share of the pilots' cores (RP runs)."""
    cores = sum(p.cores for p in data.pilots)
    if not data.core_use or not cores:
        return ('<h3>Core utilisation</h3><p class="note" id="utilisation">Not known: '
                'the run records no core count and no core use (RADICAL-Pilot runs '
                'inside RP\u2019s session directory do).</p>')
    changes: List[Tuple[float, int]] = []
    for start, end, held in data.core_use:
        changes += [(start, held), (end, -held)]
    held_series = _accumulate(changes, span)
    peak = max(v for _, v in held_series)
    frame = Frame(span, max(100.0, 100.0 * peak / cores), 200)
    body = frame.axes('seconds since the run began', '% of cores held')
    body.append(svg.steps(frame, [(t, 100.0 * v / cores) for t, v in held_series], 'util'))
    busy = 100.0 * _mean_level(held_series, span) / cores
    return ('<h3>Core utilisation</h3>'
            + svg.svg(200, body, 'core utilisation', 'utilisation-chart')
            + f'<p class="note" id="utilisation">{busy:.1f}% of the pilots\u2019 {cores} cores '
              f'held by tasks on average over the run ({len(data.core_use)} tasks, from '
              f'the pilots\u2019 schedulers: scheduled until unscheduled).</p>')


def _mean_level(points: List[Tuple[float, float]], span: float) -> float:
    total = 0.0
    for (t, v), (t_next, _) in zip(points, points[1:] + [(span, 0)]):
        total += v * max(t_next - t, 0.0)
    return total / span if span > 0 else 0.0


# ---------------------------------------------------------------- failures

def _failed(data: RunData, tasks: List[TaskRow]) -> str:
    own = _failed_own(tasks)
    failed = [t for t in tasks if t.state == 'FAILED']
    if not failed:
        return '<h2 id="failed">Failed tasks</h2><p id="no-failures">No task failed.</p>'
    rows = []
    for task in own[:FAILED_ROWS]:
        tail = data.stderr.get(task.uid)
        if tail is None:
            err = '<span class="note">no stderr file (capture_stdio=True keeps one)</span>'
        elif not tail.strip():
            err = '<span class="note">empty</span>'
        else:
            err = (f'<details><summary>{len(tail.splitlines())} lines</summary>'
                   f'<pre>{esc(tail)}</pre></details>')
        rows.append((esc(task.name), esc(task.uid), esc(task.cause or '-'),
                     str(task.attempts), err))
    by_cause: Dict[str, int] = {}
    for task in failed:
        by_cause[task.cause or '-'] = by_cause.get(task.cause or '-', 0) + 1
    causes = sorted(by_cause.items(), key=lambda kv: -kv[1])
    dependents = len(failed) - len(own)
    return ('<h2 id="failed">Failed tasks</h2>'
            f'<p>Failed themselves: <span id="failed-own">{len(own)}</span>; because a '
            f'dependency failed: <span id="failed-dependents">{dependents}</span>.</p>'
            + _table('failed-table', ('task', 'uid', 'cause', 'attempts', 'stderr (end)'),
                     rows, numeric=(3,))
            + _more(len(rows), len(own), 'tasks that failed themselves')
            + _table('causes-table', ('tasks', 'cause'),
                     [(str(n), esc(c)) for n, c in
                      ((n, c) for c, n in causes[:LIST_ROWS])], numeric=(0,))
            + _more(min(len(causes), LIST_ROWS), len(causes), 'causes'))


def _failures_by_cause(groups: List[Dict[str, Any]]) -> str:
    """The summary's failure groups (when there is no profile)."""
    if not groups:
        return ''
    rows = [(str(g.get('count', '')), esc(g.get('cause', '')),
             esc(', '.join(g.get('tasks') or []))) for g in groups[:LIST_ROWS]]
    return ('<h2 id="failed">Failed tasks</h2>'
            + _table('causes-table', ('tasks', 'cause', 'for example'), rows, numeric=(0,)))


# ---------------------------------------------------------------- durations

def _slowest(tasks: List[TaskRow]) -> str:
    timed = heapq.nlargest(SLOWEST, (t for t in tasks if t.duration is not None),
                           key=lambda t: t.duration)
    if not timed:
        return ''
    rows = [(esc(t.name), esc(t.uid), esc(t.state.lower()), seconds(t.duration),
             seconds(t.wait), esc(';'.join(t.nodes) or t.workflow or '-'))
            for t in timed[:SLOWEST]]
    return ('<h2 id="slowest">Slowest tasks</h2>'
            + _table('slowest-table', ('task', 'uid', 'state', 'ran', 'waited', 'where / workflow'),
                     rows, numeric=(3, 4)))


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile of sorted ``values`` (nearest rank)."""
    return values[min(int(q * len(values)), len(values) - 1)]


def _waiting(tasks: List[TaskRow]) -> str:
    waits = sorted(t.wait for t in tasks if t.wait is not None)
    if not waits:
        return ''
    engine = sorted(t.submitted - t.ready for t in tasks
                    if t.submitted is not None and t.ready is not None)
    backend = sorted(t.running - t.submitted for t in tasks
                     if t.running is not None and t.submitted is not None)
    stats = []
    for label, values in (('ready \u2192 running', waits), ('ready \u2192 submitted (engine)', engine),
                          ('submitted \u2192 running (backend)', backend)):
        if values:
            stats.append((esc(label), str(len(values)), seconds(quantile(values, 0.5)),
                           seconds(quantile(values, 0.9)), seconds(quantile(values, 0.99)),
                           seconds(values[-1])))
    high = quantile(waits, 0.99) or waits[-1] or 1e-6
    width = high / WAIT_BINS
    counts = [0] * WAIT_BINS
    overflow = 0
    for value in waits:
        index = int(value / width) if width > 0 else 0
        if index >= WAIT_BINS:
            if value <= high:
                counts[-1] += 1
            else:
                overflow += 1
        else:
            counts[index] += 1
    edges = [i * width for i in range(WAIT_BINS + 1)]
    return ('<h2 id="waiting">Waiting time (ready \u2192 running)</h2>'
            + svg.histogram(counts, edges, 'waiting-chart', 'waiting time distribution',
                            'seconds from READY to RUNNING', overflow)
            + _table('waiting-table', ('', 'tasks', 'median', '90%', '99%', 'max'), stats,
                     numeric=(1, 2, 3, 4, 5)))


# ---------------------------------------------------------------- retries, replays

def _retries(tasks: List[TaskRow]) -> str:
    retried = sorted((t for t in tasks if t.attempts > 1), key=lambda t: -t.attempts)
    replayed = [t for t in tasks if t.replayed]
    out = ['<h2 id="retries">Retries and replayed tasks</h2>',
           f'<p>Tried more than once: <span id="retried-count">{len(retried)}</span> '
           f'tasks ({sum(t.attempts - 1 for t in retried)} retries).  Replayed from the '
           f'campaign journal of an earlier run (not run again): '
           f'<span id="replayed-count">{len(replayed)}</span> tasks.</p>']
    if retried:
        out.append(_table('retried-table', ('task', 'uid', 'attempts', 'final state', 'cause'),
                          [(esc(t.name), esc(t.uid), str(t.attempts), esc(t.state.lower()),
                            esc(t.cause or '-')) for t in retried[:LIST_ROWS]], numeric=(2,)))
        out.append(_more(min(len(retried), LIST_ROWS), len(retried), 'retried tasks'))
    if replayed:
        names: Dict[str, int] = {}
        for task in replayed:
            names[task.name] = names.get(task.name, 0) + 1
        out.append(_table('replayed-table', ('task', 'replayed'),
                          [(esc(n), str(c)) for n, c in list(names.items())[:LIST_ROWS]],
                          numeric=(1,)))
    return ''.join(out)


# ---------------------------------------------------------------- RADICAL-Pilot

def _nodes(data: RunData, tasks: List[TaskRow]) -> str:
    per_node: Dict[str, int] = dict(data.summary.get('tasks_per_node') or {})
    if not per_node:
        for task in tasks:
            for node in task.nodes:
                per_node[node] = per_node.get(node, 0) + 1
    if not per_node:
        return ''
    items = sorted(per_node.items())
    chart = svg.bar_chart(items[:MAX_LANES * 4], 'nodes-chart', 'tasks per node', 'tasks') \
        if len(items) > 1 else ''
    return ('<h2 id="nodes">Tasks per node</h2>' + chart
            + _table('nodes-table', ('node', 'tasks'),
                     [(esc(n), str(c)) for n, c in items[:LIST_ROWS]], numeric=(1,))
            + _more(min(len(items), LIST_ROWS), len(items), 'nodes'))


def _pilots(data: RunData) -> str:
    if not data.pilots:
        if data.rp_session:
            return (f'<h2 id="pilots">Pilots</h2><p class="note">RP session '
                    f'{esc(data.rp_session)}: no pilot states found.</p>')
        return ''
    rows = []
    for pilot in data.pilots:
        started, ended = pilot.started, pilot.ended
        rows.append((esc(pilot.uid), esc(pilot.final.lower()), _clock(data, started),
                     _clock(data, ended),
                     seconds(ended - started if started is not None and ended is not None
                             else None),
                     str(pilot.cores or "-")))
    return ('<h2 id="pilots">Pilots</h2>'
            f'<p class="sub">RADICAL-Pilot session: {esc(data.rp_session)}</p>'
            + _table('pilots-table', ('pilot', 'state', 'active at', 'ended at', 'active for',
                                      'cores'), rows, numeric=(2, 3, 4, 5))
            + '<p class="note">Times in seconds since the run\u2019s first task event.</p>')


def _clock(data: RunData, value: Optional[float]) -> str:
    return '-' if value is None else f'{value:.1f}'
