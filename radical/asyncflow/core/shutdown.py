"""How an engine ends: an orderly shutdown, a signal, or a loop torn down first.

Whichever way, the engine stops its own coroutines, cancels what is
unfinished, closes the backends it owns and keeps the run's record: the
observer writes the profile and the run summary, which says how the run
ended (:func:`outcome_of`: completed, failed with the driver's exception,
interrupted by a signal, or abandoned when the event loop ended before
``engine.shutdown()``).
"""

from __future__ import annotations

import asyncio
import signal as signals
from typing import Any, Dict, List, Optional

from .context import RunContext
from .graph import NodeState
from .interfaces import RunObserver
from .outcomes import Outcomes
from .process_wide import SignalMember
from .records import BLOCK, ComponentRecord
from .reporter import EngineReporter
from .routing import Routes, shutdown_backends

#: Seconds shutdown() waits for the engine's own coroutines and backend calls.
ENGINE_STOP_WAIT = 5.0


class Shutdown:
    """Ends one engine, once, whichever way it ends."""

    def __init__(self, *, engine_log: Any, prof: Any, shutdown_event: asyncio.Event,
                 records: Dict[str, ComponentRecord], routes: Routes,
                 reporter: EngineReporter, outcomes: Outcomes, observer: RunObserver,
                 signals: SignalMember, run: Optional[RunContext]) -> None:
        self._log = engine_log
        self._prof = prof
        self._event = shutdown_event
        self._records = records
        self._routes = routes
        self._reporter = reporter
        self._outcomes = outcomes
        self._observer = observer
        self._signals = signals
        self._run = run
        self._task: Optional[asyncio.Task] = None
        #: The run summary, once the run ended.
        self.summary: Optional[Dict[str, Any]] = None

    def start(self, internal: List[asyncio.Task], skip_backends: bool,
              signal: Optional[int] = None, outcome: Optional[Dict[str, Any]] = None
              ) -> asyncio.Task:
        """Start the orderly stop (once); its task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._stop(internal, skip_backends, signal, outcome))
        return self._task

    async def stop(self, internal: List[asyncio.Task], skip_backends: bool,
                   outcome: Optional[Dict[str, Any]] = None) -> None:
        """Stop in order; a later call waits for the first."""
        await asyncio.shield(self.start(internal, skip_backends, None, outcome))

    async def _stop(self, internal: List[asyncio.Task], skip_backends: bool,
                    signal: Optional[int], outcome: Optional[Dict[str, Any]]) -> None:
        self._log.debug('shutting down')
        self._event.set()
        current = asyncio.current_task()
        internal = [t for t in internal if t is not current]
        for task in internal:
            task.cancel()
        if internal:
            done, pending = await asyncio.wait(internal, timeout=ENGINE_STOP_WAIT)
            if pending:
                self._log.warning('engine coroutines did not stop within %ss', ENGINE_STOP_WAIT)
        if signal is None:
            # Backends that are shut down need not be told of each cancelled task.
            self.cancel_pending(stop_in_backend=skip_backends)
        else:
            # Stopped by a signal: the SignalHub cancels the futures once every
            # engine of the loop kept its record, so that the program unwinds only then.
            self._reporter.closed = True
        await self._outcomes.wait_background(ENGINE_STOP_WAIT)
        if signal is None:
            self._signals.leave()
        to_close, kept = [], []
        for route in self._routes:
            last = route.detach(self._reporter)
            if skip_backends:
                continue
            if route.owned and last and not getattr(route.backend, 'held', False):
                to_close.append(route.backend)
            else:
                kept.append(route.name)
        if skip_backends:
            self._log.info('leaving the execution backends running, as asked')
        elif kept:
            self._log.info('leaving running the backends this engine does not own or '
                           'another engine still uses: %s', ', '.join(kept))
        await shutdown_backends(to_close, self._log)
        self._reporter.closed = True
        for route in self._routes:
            route.forget(self._reporter)
        self.keep_record(outcome or outcome_of(None, signal), signal)
        self._log.info('engine stopped')

    async def abandon(self, internal: List[asyncio.Task]) -> Dict[str, Any]:
        """The event loop ends before shutdown() (the driver raised, returned, or
        forgot it): stop in order all the same; the outcome says so."""
        unfinished = self._observer.unfinished
        reason = (f'the event loop ended before engine.shutdown(), with {unfinished} '
                  f'components unfinished')
        self._log.warning('%s', reason)
        creator, error = self._signals.creator, None
        if creator is not None and creator.done():
            if not creator.cancelled():
                error = creator.exception()       # the driver raised it
            elif creator.cancelling() == 0:
                # asyncio.run()'s Ctrl-C: it cancelled the main task, then took the
                # cancellation back to raise KeyboardInterrupt instead
                error = KeyboardInterrupt()
        outcome = outcome_of(error, None, reason)
        try:
            await asyncio.wait_for(asyncio.shield(self.start(internal, False, None, outcome)),
                                   ENGINE_STOP_WAIT * 3)
        except (asyncio.TimeoutError, asyncio.CancelledError):
            if self.summary is None:
                self.keep_record(outcome, None)
        return outcome

    def keep_record(self, outcome: Dict[str, Any], signal: Optional[int]) -> None:
        """Close the journal, write the profile and the summary with ``outcome``."""
        recorder, self._outcomes.recorder = self._outcomes.recorder, None
        journal = recorder.close() if recorder is not None else None
        self.summary = self._observer.stop(signal, outcome, journal)
        if self._run is not None:
            self._run.summaries.append(self.summary)
        self._prof.prof('engine_stop', uid='engine')
        self._prof.flush()

    def cancel_pending(self, stop_in_backend: bool) -> None:
        """Cancel every unfinished future; the backend is told only if asked."""
        pending = [r for r in self._records.values()
                   if r.state is not NodeState.DONE and r.future is not None
                   and not r.future.done()]
        if pending:
            self._log.info('cancelling %d unfinished components', len(pending))
        for record in pending:
            # Block coroutines are the engine's own: always stopped.
            record.backend_final = not stop_in_backend and record.spec.kind is not BLOCK
            record.future.cancel()


def outcome_of(error: Optional[BaseException], signal_number: Optional[int] = None,
               reason: str = '') -> Dict[str, Any]:
    """How a run ended, for the summary: completed, failed (the exception's type and
    message), interrupted (by signal N) or abandoned (the loop ended before shutdown)."""
    if signal_number is not None:
        return {'status': 'interrupted', 'signal': signal_name(signal_number),
                'signal_number': int(signal_number)}
    if isinstance(error, KeyboardInterrupt):
        return outcome_of(None, signals.SIGINT)
    if isinstance(error, SystemExit) and error.code in (None, 0):
        error = None
    if error is not None:
        return {'status': 'failed', 'exception': type(error).__name__,
                'message': str(error if not isinstance(error, SystemExit) else error.code)}
    if reason:
        return {'status': 'abandoned', 'reason': reason}
    return {'status': 'completed'}


def signal_name(sig: Optional[int]) -> Optional[str]:
    """``SIGTERM`` for 15 (None for None)."""
    if sig is None:
        return None
    try:
        return signals.Signals(sig).name
    except ValueError:
        return str(sig)
