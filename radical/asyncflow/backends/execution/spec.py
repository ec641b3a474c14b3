"""What crosses the engine ↔ backend seam: task specs in, reports out.

The engine hands a backend an immutable :class:`TaskSpec` per ready task
and a :class:`Reporter`; the backend reports each state change of that task
through the reporter it was given with it, from any thread.  The reporter
belongs to the engine that submitted the task, so a backend serving several
engines cannot deliver a report to the wrong one.

Results are typed too: a function task's result is its return value, an
executable task's a :class:`CommandResult`.  :func:`outcome_fields` is the
one place that turns a result into the ``stdout``/``stderr``/``exit_code``
/``return_value`` keys of the task dicts older programs read.
"""

from __future__ import annotations

import enum
import types
from typing import (Any, Callable, Dict, Mapping, NamedTuple, Optional, Protocol, Sequence,
                    Tuple)


class TaskType(str, enum.Enum):
    """How a task runs: a Python function, or the shell command it returns."""

    FUNCTION = 'function'
    EXECUTABLE = 'executable'
    #: a prompt for a backend that answers prompts (an AI inference backend)
    PROMPT = 'prompt'


#: The shared read-only empty mapping of specs without options or kwargs.
NO_OPTIONS: Mapping[str, Any] = types.MappingProxyType({})


class DataEdge(NamedTuple):
    """Data a task receives from a dependency, or a file it stages in.

    * implicit: ``DataEdge(source=<producer uid>)``: whatever the producer
      left in its working directory;
    * explicit, from a producer: ``file_name`` (the base name), ``file_path``
      (the path the producer declared with ``OutputFile``);
    * explicit, from the client: ``source=None``, ``file_path`` a local path
      or URL.

    ``source_backend`` names the backend the producer ran on.
    """

    source: Optional[str]
    file_name: Optional[str] = None
    file_path: Optional[str] = None
    source_backend: Optional[str] = None

    @property
    def implicit(self) -> bool:
        """Whether this is the implicit edge (everything the producer made)."""
        return self.file_name is None and self.file_path is None


class TaskSpec(NamedTuple):
    """One attempt of one ready task, as a backend receives it.

    ``args``/``kwargs`` hold the dependencies' results already; ``options``
    are the task's ``task_description`` keys meant for the backend; ``inputs``
    are the files it stages in and, for a backend that stages data
    (``shared_filesystem = False``), the implicit edges from its dependencies.
    ``attempt`` counts from 1; a retried task comes again with the same uid
    and a higher attempt.
    """

    uid: str
    name: str
    type: TaskType
    function: Optional[Callable[..., Any]]
    command: Optional[str]
    args: Tuple[Any, ...]
    kwargs: Mapping[str, Any]
    options: Mapping[str, Any]
    service: bool = False
    attempt: int = 1
    inputs: Tuple[DataEdge, ...] = ()
    input_files: Tuple[str, ...] = ()
    output_files: Tuple[str, ...] = ()
    #: The workflow the task belongs to (``workflow_id=``, ``engine.workflow_scope()``).
    workflow_id: Optional[str] = None
    #: ``capture_stdio=True``: the directory the command's stdout and stderr go to,
    #: as files ``stdout`` and ``stderr``; its result is the stdout file's path.
    stdio_dir: Optional[str] = None
    #: A prompt task's prompt (what its function returned); the result is the answer.
    prompt: Optional[str] = None

    @property
    def is_function(self) -> bool:
        """Whether the task runs a Python function (else a shell command)."""
        return self.type is TaskType.FUNCTION


class CommandResult(NamedTuple):
    """What a finished command left behind."""

    exit_code: int
    stdout: str
    stderr: str                 # the tail, at most _command.STDERR_TAIL bytes
    stderr_size: int = 0        # the full size in bytes


def answers_prompts(backend: Any) -> bool:
    """Whether ``backend`` runs prompt tasks: it says so (``answers_prompts = True``),
    or it is one of rhapsody-py's AI inference backends."""
    if getattr(backend, 'answers_prompts', False) is True:
        return True
    return any(cls.__module__.startswith('rhapsody.backends.ai') for cls in type(backend).__mro__)


class Reporter(Protocol):
    """How a backend reports on the tasks it was given; callable from any thread.

    Each task is reported final exactly once (``done``, ``failed`` or
    ``cancelled``); nothing follows a final report.
    """

    def running(self, task: TaskSpec, where: Optional[Sequence[str]] = None) -> None:
        """The task started to run (after any queueing of the backend's own),
        on the nodes ``where`` if the backend knows them."""

    def placed(self, task: TaskSpec, where: Sequence[str]) -> None:
        """Optional: the nodes a RUNNING task runs on, when learned after ``running``."""

    def done(self, task: TaskSpec, result: Any) -> None:
        """The task succeeded: a function's return value, a command's :class:`CommandResult`."""

    def failed(self, task: TaskSpec, error: BaseException) -> None:
        """The task failed with ``error``."""

    def cancelled(self, task: TaskSpec) -> None:
        """The task was cancelled and will not run (on)."""


def outcome_fields(spec_type: TaskType, result: Any) -> Dict[str, Any]:
    """The task-dict keys of a result: ``return_value``, or ``stdout``/``stderr``/``exit_code``."""
    if isinstance(result, CommandResult):
        return {'stdout': result.stdout, 'stderr': result.stderr,
                'exit_code': result.exit_code}
    if spec_type is TaskType.EXECUTABLE or spec_type is TaskType.PROMPT:
        return {'stdout': result}
    return {'return_value': result}
