"""How fast is a pilot whose task-launching component died or hangs noticed?

Starts one local pilot, streams short tasks to it straight through the
backend's TaskManager (``--inflight`` at a time, ``sleep --task-seconds``),
and after ``--inject-after`` tasks finished does to the pilot's
``agent_executing.0000`` process (found by its title and working directory)
one of:

  kill   SIGKILL: the process vanishes, writes nothing
  abrt   SIGABRT: what an abort inside libzmq/glibc looks like (issue 25);
         with PYTHONFAULTHANDLER=1 (set here) its .err gets
         "Fatal Python error: Aborted" and every thread's stack
  stop   SIGSTOP: the process hangs without dying

Two :class:`~radical.asyncflow.backends.execution.radical_pilot.health.PilotHealth`
watchers judge the pilot at the same time: ``local`` sees the process in
/proc and the sandbox; ``shared-fs`` sees only the sandbox and the flow of
state reports (what a client on a cluster's login node sees with a shared
file system).  Reported per run: the seconds from the injection to each
watcher's finding, and the longest gap between two state reports of the
healthy pilot while it held tasks (what the stall limit must exceed).

    python benchmarks/agent_health.py --inject kill
    python benchmarks/agent_health.py --inject stop --stall-after 60 --json h.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional

from radical.asyncflow import RadicalExecutionBackend
from radical.asyncflow.backends.execution.radical_pilot.health import (
    Flow, PilotHealth, find_component_pid)


class PilotWatcher:
    """Checks one pilot every ``every`` s in a thread, as the backend's watch does
    (the backend's own watch is off here: two views of one pilot are compared)."""

    def __init__(self, health: PilotHealth, flow: Any, on_lost: Any, every: float) -> None:
        self.health = health
        self._flow = flow
        self._on_lost = on_lost
        self._every = every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> 'PilotWatcher':
        self.health.probe.pid()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self._every):
            finding = self.health.check(self._flow())
            if finding is not None:
                self._on_lost(finding)
                return


class Stream:
    """Keeps ``inflight`` tasks on the pilot and tracks what the client hears."""

    def __init__(self, backend: Any, inflight: int, seconds: float, total: int) -> None:
        import radical.pilot as rp
        self.rp = rp
        self.backend = backend
        self.inflight = inflight
        self.seconds = seconds
        self.total = total
        self.lock = threading.Lock()
        self.state: Dict[str, str] = {}
        self.sandbox = backend.pilot_sandbox
        self.done = 0
        self.sent = 0
        self.last_report = time.monotonic()
        self.max_gap = 0.0              # longest silence while tasks were held
        self.gaps_until: Optional[float] = None     # stop measuring gaps then
        self.stop = threading.Event()
        backend.tmgr.register_callback(self._on_state)

    def _on_state(self, task: Any, state: str) -> None:
        if not task.uid.startswith('health.'):
            return
        now = time.monotonic()
        with self.lock:
            held = sum(1 for s in self.state.values() if s not in self.rp.FINAL)
            if held and (self.gaps_until is None or now < self.gaps_until):
                self.max_gap = max(self.max_gap, now - self.last_report)
            self.last_report = now
            old = self.state.get(task.uid)
            if old in self.rp.FINAL:
                return
            self.state[task.uid] = state
            if state in self.rp.FINAL:
                self.done += 1

    def flow(self) -> Flow:
        with self.lock:
            running = sum(1 for s in self.state.values() if s == self.rp.AGENT_EXECUTING)
            waiting = sum(1 for s in self.state.values()
                          if s not in self.rp.FINAL and s != self.rp.AGENT_EXECUTING)
            started = [uid for uid, s in self.state.items() if s == self.rp.AGENT_EXECUTING]
            return Flow(waiting=waiting, busy_cores=running, cores=self.backend.cores,
                        last_report=self.last_report,
                        running=[(os.path.join(self.sandbox, uid), uid) for uid in started])

    def run(self) -> None:
        rp = self.rp
        while not self.stop.is_set() and self.sent < self.total:
            with self.lock:
                held = sum(1 for s in self.state.values() if s not in rp.FINAL)
            n = min(self.inflight - held, self.total - self.sent)
            if n > 0:
                tds = []
                for _ in range(n):
                    self.sent += 1
                    uid = f'health.{self.sent:06d}'
                    with self.lock:
                        self.state[uid] = 'NEW'
                    tds.append(rp.TaskDescription({
                        'uid': uid, 'executable': '/bin/sleep',
                        'arguments': [str(self.seconds)], 'pilot': self.backend.pilot.uid}))
                self.backend.tmgr.submit_tasks(tds)
            self.stop.wait(0.2)


async def one_run(args: argparse.Namespace) -> Dict[str, Any]:
    os.environ['PYTHONFAULTHANDLER'] = '1'
    base = tempfile.mkdtemp(prefix='asyncflow-health-', dir=args.work_dir)
    backend = await RadicalExecutionBackend(
        {'resource': 'local.localhost', 'cores': args.cores, 'runtime': 30, 'sandbox': base},
        work_dir=base, watch_pilots=False)
    sandbox = backend.pilot_sandbox
    uid = backend.pilot.uid
    stream = Stream(backend, args.inflight, args.task_seconds, args.tasks)
    found: Dict[str, Any] = {}

    def reporter(name: str):
        def on_lost(finding):
            found[name] = finding
            print(f'  [{name}] {time.monotonic() - injected[0]:6.1f} s after the injection: '
                  f'{finding.message()}', flush=True)
        return on_lost

    injected = [float('inf')]
    watchers = [PilotWatcher(PilotHealth(uid, sandbox, local=local,
                                         stall_after=args.stall_after),
                             stream.flow, reporter(name), every=args.every).start()
                for name, local in (('local', True), ('shared-fs', False))]
    pid = None
    feeder = threading.Thread(target=stream.run, daemon=True)
    feeder.start()
    record: Dict[str, Any] = {'inject': args.inject, 'stall_after': args.stall_after,
                              'every': args.every, 'cores': args.cores}
    try:
        start = time.monotonic()
        while stream.done < args.inject_after:
            if time.monotonic() - start > 600 or any(found.values()):
                raise RuntimeError(f'the healthy pilot did not finish {args.inject_after} '
                                   f'tasks in 600 s (done {stream.done}; found {found})')
            await asyncio.sleep(0.2)
        pid = find_component_pid(sandbox)
        sig = {'kill': signal.SIGKILL, 'abrt': signal.SIGABRT, 'stop': signal.SIGSTOP}[args.inject]
        stream.gaps_until = time.monotonic()
        record.update({'healthy_max_gap_s': round(stream.max_gap, 2),
                       'done_at_injection': stream.done, 'executing_pid': pid,
                       'seconds_to_injection': round(time.monotonic() - start, 1),
                       'load_at_injection': round(os.getloadavg()[0], 2)})
        print(f'  {stream.done} done; longest healthy gap {stream.max_gap:.1f} s; '
              f'{args.inject} -> pid {pid}', flush=True)
        injected[0] = time.monotonic()
        os.kill(pid, sig)
        deadline = injected[0] + args.stall_after + 3 * args.every + 60
        while len(found) < len(watchers) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        for name in ('local', 'shared-fs'):
            f = found.get(name)
            record[name] = None if f is None else {
                'verdict': f.verdict.name, 'seconds': round(f.at - injected[0], 1),
                'detail': f.detail}
        record['done_after'] = stream.done
        record['err'] = watchers[0].health.probe.err_text(600)
    finally:
        stream.stop.set()
        for w in watchers:
            w.stop()
        if pid is not None and args.inject == 'stop':
            _signal(pid, signal.SIGCONT)
        await backend.shutdown()
        if pid is not None:             # the component must not outlive its pilot
            _signal(pid, signal.SIGKILL)
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    return record


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--inject', choices=('kill', 'abrt', 'stop'), default='kill')
    p.add_argument('--inject-after', type=int, default=40, help='tasks done before it')
    p.add_argument('--tasks', type=int, default=2000)
    p.add_argument('--inflight', type=int, default=32)
    p.add_argument('--task-seconds', type=float, default=0.5)
    p.add_argument('--cores', type=int, default=4)
    p.add_argument('--stall-after', type=float, default=120.0)
    p.add_argument('--every', type=float, default=2.0, help='seconds between checks')
    p.add_argument('--work-dir', default=None)
    p.add_argument('--keep', action='store_true')
    p.add_argument('--json', help='append the run\'s record (JSON line)')
    args = p.parse_args(argv)
    record = asyncio.run(one_run(args))
    print(json.dumps(record, indent=1))
    if args.json:
        with open(args.json, 'a') as f:
            f.write(json.dumps(record) + '\n')
    return 0


if __name__ == '__main__':
    sys.exit(main())
