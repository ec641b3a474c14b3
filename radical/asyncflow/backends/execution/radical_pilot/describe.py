"""Engine tasks as RADICAL-Pilot TaskDescriptions.

Decides how a task runs on the pilot (:class:`TaskKind`), keeps the
``task_description`` keys RP knows and the backend does not set itself, and
writes the command so that RP's task script runs it unchanged.
"""

from __future__ import annotations

import base64
import enum
import logging
import os
import sys
from typing import Any, Callable, Dict, Optional

from ..spec import TaskSpec
from .payload import TRAMPOLINE_COMMAND, Links
from .staging import link_inputs_command
from ....errors import UsageValueError

#: Seconds a service task may take to come up (task_description 'startup_timeout').
SERVICE_STARTUP_TIMEOUT = 300
#: task_description keys the backend sets itself.
_RESERVED_KEYS = frozenset({'uid', 'name', 'mode', 'executable', 'arguments', 'function',
                            'args', 'kwargs', 'code', 'command', 'raptor_id', 'pilot'})

log = logging.getLogger('radical.asyncflow.radical')

#: ``(opts, what) -> opts`` without the keys RP does not take (see :func:`valid_keys`).
KeyFilter = Callable[[Dict[str, Any], str], Dict[str, Any]]


class TaskKind(enum.Enum):
    """How an engine task runs on the pilot."""

    EXECUTABLE = 'executable'
    FUNCTION = 'function'           # through the trampoline, as an executable
    RAPTOR_FUNCTION = 'raptor'      # on a RAPTOR worker
    SERVICE = 'service'


def describe_task(rp: Any, uid: str, task: TaskSpec, options: Dict[str, Any], links: Links,
                  valid_keys: KeyFilter, pick_master: Optional[Callable[[str], str]]) -> Any:
    """An ``rp.TaskDescription`` for ``task`` with RP uid ``uid``.

    ``options`` are the task's options with staging directives resolved;
    ``links`` the producer sandboxes whose files it gets (implicit data).
    Function tasks go to a RAPTOR master chosen by ``pick_master`` (None:
    no RAPTOR), else through the trampoline; their call is attached at
    submission (:func:`.payload.attach_call`, :func:`.payload.raptor_function`).
    """
    name = task.name
    is_function = task.function is not None
    if task.service and is_function:
        raise UsageValueError('RadicalExecutionBackend does not support function service tasks')
    opts = valid_keys(dict(options), f"task '{name}'")
    td = rp.TaskDescription(opts)
    td.uid = uid
    td.name = str(name)
    td.metadata = {**(td.metadata or {}), 'asyncflow_uid': task.uid}
    if is_function and pick_master is not None:
        kind = TaskKind.RAPTOR_FUNCTION
        td.mode = rp.TASK_FUNCTION
        td.raptor_id = pick_master(name)
        for key in ('pre_exec', 'post_exec', 'pre_launch'):
            if td.get(key):
                log.warning("task '%s': %s is ignored for RAPTOR function tasks", name, key)
    elif is_function:
        kind = TaskKind.FUNCTION
        td.mode = rp.TASK_EXECUTABLE
        td.executable = sys.executable
        td.arguments = ['-c', TRAMPOLINE_COMMAND]       # the call: attach_call
    else:
        command = task.command
        if not isinstance(command, str) or not command.strip():
            raise UsageValueError(f"executable task '{name}' has no command")
        if task.service:
            kind = TaskKind.SERVICE
            td.mode = rp.TASK_SERVICE
            td.executable = _service_command(command)
            td.arguments = []
            td.named_env = td.named_env or 'rp'     # finds radical-pilot-service-wrapper
            td.startup_timeout = td.startup_timeout or SERVICE_STARTUP_TIMEOUT
        else:
            kind = TaskKind.EXECUTABLE
            td.mode = rp.TASK_EXECUTABLE
            td.executable = '/bin/sh'
            td.arguments = ['-c', _shell_argument(command)]
    if links and kind is not TaskKind.RAPTOR_FUNCTION and kind is not TaskKind.FUNCTION:
        td.pre_exec = [link_inputs_command(links), *(td.pre_exec or [])]
    td.metadata['asyncflow_kind'] = kind.value
    allow_mpi_as_root(td)
    keep_node_name(td)
    return td


def valid_keys(schema: Any, opts: Dict[str, Any], what: str, warned: set) -> Dict[str, Any]:
    """``opts`` without keys RP's TaskDescription does not know (warned once).

    ``schema`` is ``rp.TaskDescription._schema``; ``warned`` holds the keys
    already warned about.
    """
    for key in list(opts):
        if key in schema and key not in _RESERVED_KEYS or \
                (what.startswith('raptor') and key in ('executable', 'arguments', 'uid')):
            continue
        value = opts.pop(key)
        if key not in warned:
            warned.add(key)
            log.warning('%s: task_description key %r (%r) is not used by '
                        'RadicalExecutionBackend', what, key, value)
    return opts


def allow_mpi_as_root(td: Any) -> None:
    """OpenMPI's mpiexec refuses root unless told in the launcher's environment."""
    if os.geteuid() == 0 and (td.ranks or 1) > 1:
        allow = 'export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1'
        if allow not in (td.pre_launch or []):
            td.pre_launch = [allow, *(td.pre_launch or [])]


#: Sets SLURMD_NODENAME from the job step's own SLURM_TOPOLOGY_ADDR (its last part).
_NODE_NAME = 'test -z "$SLURM_TOPOLOGY_ADDR" || export SLURMD_NODENAME="${SLURM_TOPOLOGY_ADDR##*.}"'


def keep_node_name(td: Any) -> None:
    """A task in a named environment (RAPTOR masters and workers are in RP's
    ``rp`` one) keeps the name of the node it runs on in ``SLURMD_NODENAME``.

    RP's named environments export the agent's environment, with the agent
    node's ``SLURMD_NODENAME``, over the task's own (RP 1.103 keeps only
    ``SLURM_*`` out); ``SLURM_TOPOLOGY_ADDR`` is left alone and names the node.
    """
    if td.named_env and _NODE_NAME not in (td.pre_exec or []):
        td.pre_exec = [_NODE_NAME, *(td.pre_exec or [])]


#: Characters RP's double-quoting of arguments would let the shell interpret.
_UNSAFE = frozenset('$`\\"')


def _shell_argument(command: str) -> str:
    """The ``-c`` argument that makes ``/bin/sh`` run exactly ``command``.

    RP writes arguments in double quotes into the task script, so ``$`` and
    backticks would be expanded there; such commands travel base64-encoded
    and are decoded by that very expansion (``"$(... | base64 -d)"`` is one
    word, taken literally).
    """
    if not _UNSAFE.intersection(command) and '\n' not in command:
        return command
    encoded = base64.b64encode(command.encode()).decode()
    return f'$(printf %s {encoded} | base64 -d)'


def _service_command(command: str) -> str:
    """A one-string command for RP's service wrapper (it runs it with a shell)."""
    encoded = base64.b64encode(command.encode()).decode()
    code = (f"import base64,os;os.execv('/bin/sh',['/bin/sh','-c',"
            f"base64.b64decode('{encoded}').decode()])")
    return f'{sys.executable} -c "{code}"'
