"""Every exception radical.asyncflow raises on purpose, as one tree.

* :class:`AsyncFlowError` is the root.
* :class:`UsageError` and its subclasses: radical.asyncflow refused what
  the program gave it (a bad argument, an unknown name, a call at the wrong
  time, a journal or run directory it cannot use).  They also derive from
  the built-in exception callers caught before (``TypeError``,
  ``ValueError``, ``RuntimeError``, ...).  ``radical-asyncflow-run`` reports
  them in one line with exit status 2.
* The outcome of a workflow: :class:`DependencyFailure` (also called
  :data:`DependencyFailureError`, its name in radical.asyncflow 0.1.0 and
  0.6), :class:`TaskExecutionError`, :class:`BackendError`.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence


class AsyncFlowError(Exception):
    """Base class of the errors radical.asyncflow raises itself."""


class UsageError(AsyncFlowError):
    """radical.asyncflow cannot do what the program asked; the message says what to change."""


class UsageTypeError(UsageError, TypeError):
    """An argument of the wrong type."""


class UsageValueError(UsageError, ValueError):
    """An argument of the right type with a value that cannot be used."""


class UsageStateError(UsageError, RuntimeError):
    """A call at a moment it cannot work (no event loop, after shutdown, ...)."""


class InputFileError(UsageError, FileNotFoundError):
    """An InputFile that is neither a dependency's OutputFile nor an existing path or URL."""


class RunDirectoryExists(UsageError, FileExistsError):
    """A run's directory exists already: each run keeps its own record."""


class DependencyFailure(AsyncFlowError):
    """Raised into a task that was not run because a dependency failed.

    ``failed_dependencies`` names the direct dependencies that failed;
    ``root_cause`` is the exception that started the chain (also set as
    ``__cause__``), however many tasks lie between.
    """

    def __init__(self, message: str, failed_dependencies: Optional[Sequence[str]] = (),
                 root_cause: Optional[BaseException] = None) -> None:
        super().__init__(message)
        self.failed_dependencies = list(failed_dependencies or ())
        self.root_cause = root_cause
        self.__cause__ = root_cause

    def __reduce__(self):
        return (type(self), (str(self), self.failed_dependencies, self.root_cause))


#: The name programs of radical.asyncflow 0.1.0 and 0.6 catch: the same class,
#: so ``except DependencyFailureError`` and ``except DependencyFailure`` both
#: catch every dependency failure.
DependencyFailureError = DependencyFailure


class TaskExecutionError(AsyncFlowError, RuntimeError):
    """An executable task exited non-zero.

    Carries the command, its exit code, the (possibly truncated) stderr and
    what it wrote to stdout.
    """

    def __init__(self, message: str, *, task_name: str = '', command: str = '',
                 exit_code: Optional[int] = None, stderr: str = '', stdout: str = '') -> None:
        super().__init__(message)
        self.task_name = task_name
        self.command = command
        self.exit_code = exit_code
        self.stderr = stderr
        self.stdout = stdout

    def __reduce__(self):
        return (_rebuild_execution_error,
                (str(self), self.task_name, self.command, self.exit_code, self.stderr,
                 self.stdout))


def _rebuild_execution_error(message, task_name, command, exit_code, stderr, stdout=''):
    return TaskExecutionError(message, task_name=task_name, command=command,
                              exit_code=exit_code, stderr=stderr, stdout=stdout)


class BackendError(AsyncFlowError, RuntimeError):
    """A backend could not be set up or used."""


class MissingDependencyError(UsageError, ImportError):
    """An optional package a backend needs is not installed."""

    def __init__(self, backend: str, package: str, extra: str) -> None:
        super().__init__(
            f"{backend} needs the '{package}' package, which is not installed: "
            f"pip install 'radical.asyncflow[{extra}]'", name=package)


def format_names(names: Iterable[str], limit: int = 5) -> str:
    """'a, b, c' with at most ``limit`` names and a count of the rest."""
    names = list(names)
    shown = ', '.join(names[:limit])
    if len(names) > limit:
        shown += f' and {len(names) - limit} more'
    return shown


class DependencyCycleError(UsageError, RuntimeError):
    """A block waits, directly or through tasks, for its own result: a deadlock."""


class InvalidTransition(AsyncFlowError, RuntimeError):
    """A component was moved between states in an order that cannot happen (a bug)."""
