"""The RADICAL-Pilot backend: tasks as RADICAL-Pilot tasks on a pilot.

:class:`RadicalExecutionBackend` is in :mod:`.backend`; the helpers it uses
are its neighbours: :mod:`.describe` (engine task -> ``rp.TaskDescription``),
:mod:`.payload` (function tasks: the pickled call and the code that runs it on
the pilot), :mod:`.outcome` (a finished RP task -> result or exception),
:mod:`.staging` (data between tasks), :mod:`.raptor` (RAPTOR masters and
workers), :mod:`.session` (the RP session around the pilot) and
:mod:`.tasks` (the submitted tasks and their phases).  Importing this package
does not import radical.pilot; constructing the backend does.
"""

from .backend import PILOT_STARTUP_TIMEOUT, TESTED_RP_VERSIONS, RadicalExecutionBackend
from .describe import SERVICE_STARTUP_TIMEOUT, TaskKind
from .payload import run_payload_file
from .raptor import MasterSpec, WorkerSpec, parse_raptor_config
from .session import (CLOSE_TIMEOUT, DEFAULT_RUNTIME, PILOT_CANCEL_TIMEOUT,
                      PROCESS_EXIT_TIMEOUT, TASK_STOP_TIMEOUT)
from .tasks import Phase

__all__ = ['RadicalExecutionBackend', 'TaskKind', 'Phase', 'WorkerSpec', 'MasterSpec',
           'parse_raptor_config', 'run_payload_file', 'TESTED_RP_VERSIONS',
           'PILOT_STARTUP_TIMEOUT', 'DEFAULT_RUNTIME', 'SERVICE_STARTUP_TIMEOUT',
           'CLOSE_TIMEOUT', 'PROCESS_EXIT_TIMEOUT', 'TASK_STOP_TIMEOUT', 'PILOT_CANCEL_TIMEOUT']
