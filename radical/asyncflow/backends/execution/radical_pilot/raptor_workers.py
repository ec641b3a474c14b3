"""RAPTOR worker classes for the function tasks of RadicalExecutionBackend.

RADICAL-Pilot's ``DefaultWorker`` runs every function task in processes it
forks for that task; a task of this backend unpickles its function with
``dill``, so each of those processes imported ``dill`` anew.  The classes
here are RP's own workers with that import done once, in the worker: the
forked processes inherit it.  (The task's function, :data:`.payload.PILOT_CODE`,
travels by value: the worker needs nothing of radical.asyncflow.)

:class:`AsyncflowDefaultWorker` also closes a start-up race of RP 1.103's
``DefaultWorker``: it subscribes to the master's requests before it has
made its result queue, so a task that arrives in that moment runs in a
process that cannot report it (``AttributeError: ... '_result_queue'``): the
task is never finished and its cores stay busy, so the worker takes no other.
Here requests wait until the worker is set up.

``radical-pilot-raptor-worker`` loads this file by path (the worker's
``raptor_file``), not as part of the package, so it imports by absolute
names only.  Checked with radical.pilot 1.103.
"""

import threading

import dill  # noqa: F401  (inherited by the forked task processes)
import radical.pilot as rp


class AsyncflowDefaultWorker(rp.raptor.DefaultWorker):
    """RP's DefaultWorker, with dill imported and requests held until the
    worker is set up."""

    def __init__(self, raptor_id: str) -> None:
        self._set_up = threading.Event()
        super().__init__(raptor_id)
        self._set_up.set()

    def _request_cb(self, tasks):           # RP's request thread calls it
        self._set_up.wait()
        return super()._request_cb(tasks)


class AsyncflowMPIWorker(rp.raptor.MPIWorker):
    """RP's MPIWorker, with dill imported."""
