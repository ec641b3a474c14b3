"""RAPTOR worker classes for the function tasks of RadicalExecutionBackend.

RADICAL-Pilot's ``DefaultWorker`` runs every function task in processes it
forks for that task; a task of this backend calls
:func:`.payload._raptor_entry`, so each of those processes imported
``radical.asyncflow`` and ``dill`` anew (about 0.3 s of CPU per task).  The
classes here are RP's own workers with those imports done once, in the
worker: the forked processes inherit them.

``radical-pilot-raptor-worker`` loads this file by path (the worker's
``raptor_file``), not as part of the package, so it imports by absolute
names only.  Checked with radical.pilot 1.103.
"""

import dill  # noqa: F401  (inherited by the forked task processes)
import radical.pilot as rp

from radical.asyncflow.backends.execution.radical_pilot import payload  # noqa: F401


class AsyncflowDefaultWorker(rp.raptor.DefaultWorker):
    """RP's DefaultWorker, with radical.asyncflow's payload runner imported."""


class AsyncflowMPIWorker(rp.raptor.MPIWorker):
    """RP's MPIWorker, with radical.asyncflow's payload runner imported."""
