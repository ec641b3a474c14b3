"""How an engine ends: an orderly shutdown, a signal, or a loop torn down first.

Whichever way, the run keeps its record: the profile holds every event
recorded up to that moment and the run summary says how the run ended
(:func:`~.monitor.outcome_of`: completed, failed with the driver's
exception, interrupted by a signal, or abandoned when the event loop ended
before ``engine.shutdown()``).
"""

from __future__ import annotations

import asyncio
from typing import Any

from .graph import NodeState
from .monitor import outcome_of
from .records import BLOCK
from .routing import shutdown_backends
from .run_stats import STATS

#: Seconds shutdown() waits for the engine's own coroutines and backend calls.
SHUTDOWN_WAIT = 5.0


async def stop_engine(engine: Any, skip_execution_backend: bool,
                      interrupted: bool = False) -> None:
    """Stop everything; ``interrupted``: by a signal (its SignalHub ends the process)."""
    engine.log.debug('shutting down')
    engine._shutdown_event.set()
    internal = [t for t in (engine._run_task, engine._submit_task) if t is not None]
    for task in internal:
        task.cancel()
    if internal:
        done, pending = await asyncio.wait(internal, timeout=SHUTDOWN_WAIT)
        if pending:
            engine.log.warning('engine coroutines did not stop within %ss', SHUTDOWN_WAIT)
    if interrupted:
        # the futures are cancelled as the process exits: later reports change nothing
        engine._reporter.closed = True
    else:
        cancel_pending(engine, stop_in_backend=skip_execution_backend)
    await engine._outcomes.wait_background(SHUTDOWN_WAIT)
    if engine._signals is not None and not interrupted:
        engine._signals.leave(engine)
    if skip_execution_backend:
        engine.log.info('leaving the execution backends running, as asked')
    else:
        await shutdown_backends(engine._routes, engine.log)
    engine._reporter.closed = True
    for route in engine._routes:
        route.forget(engine._reporter)
    _keep_the_record(engine, engine._outcome or outcome_of(None, engine.exit_signal))
    engine.log.info('engine stopped')


def abandon_engine(engine: Any) -> None:
    """The event loop ends before shutdown() (the driver raised, exited, or forgot
    it): stop in place, keep the record; the driver's exception, if any, is the
    outcome (the engine's creator task holds it)."""
    engine._shutdown_event.set()
    engine._reporter.closed = True
    if engine._signals is not None:
        engine._signals.leave(engine)
    creator, error = engine._creator, None
    if creator is not None and creator.done() and not creator.cancelled():
        error = creator.exception()
    unfinished = engine._monitor.total - engine._monitor.finished
    reason = (f'the event loop ended before engine.shutdown(), with {unfinished} '
              f'components unfinished; the backends were not shut down')
    engine.log.warning('%s', reason)
    _keep_the_record(engine, outcome_of(error, engine.exit_signal, reason))


def _keep_the_record(engine: Any, outcome: Any) -> None:
    """Close the journal, write the profile and the summary with ``outcome``."""
    engine._outcome = outcome
    if engine._recorder is not None:
        engine._recorder.close()
        engine._recorder = engine._outcomes.recorder = None
    STATS.summaries.append(engine._monitor.stop(engine.exit_signal, outcome))
    engine.prof.prof('engine_stop', uid='engine')
    engine.prof.flush()


def cancel_pending(engine: Any, stop_in_backend: bool) -> None:
    """Cancel every unfinished future; the backend is told only if asked."""
    pending = [r for r in engine._records.values()
               if r.state is not NodeState.DONE and not r.future.done()]
    if pending:
        engine.log.info('cancelling %d unfinished components', len(pending))
    for record in pending:
        # Block coroutines are the engine's own: always stopped.
        record.backend_final = not stop_in_backend and record.spec.kind is not BLOCK
        record.future.cancel()
