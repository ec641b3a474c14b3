"""``Task``: a keyword-built task/resource description.

A ``Task`` is a dict, so it can be given wherever a ``task_description`` is
expected (``f(x, task_description=Task(ranks=4))``), and it converts to a
RADICAL-Pilot ``TaskDescription`` with :meth:`Task.to_rp`.
"""

from __future__ import annotations

from typing import Any, Dict
from .errors import UsageTypeError, UsageValueError

#: Keys with a fixed type; other keys pass through to the backend unchecked.
_TYPED_KEYS: Dict[str, tuple] = {
    'ranks': (int,),
    'cores_per_rank': (int,),
    'gpus_per_rank': (int, float),
    'mem_per_rank': (int,),
    'priority': (int,),
    'timeout': (int, float),
    'environment': (dict,),
    'pre_exec': (list,),
    'post_exec': (list,),
    'named_env': (str,),
    'sandbox': (str,),
    'executable': (str,),
    'arguments': (list,),
    'input_staging': (list,),
    'output_staging': (list,),
    'tags': (dict,),
}

_POSITIVE = ('ranks', 'cores_per_rank')
_NON_NEGATIVE = ('gpus_per_rank', 'mem_per_rank', 'timeout')


class Task(dict):
    """Task resources and settings, e.g. ``Task(ranks=4, gpus_per_rank=1)``."""

    def __init__(self, **kwargs: Any) -> None:
        for key, value in kwargs.items():
            _check(key, value)
        super().__init__(**kwargs)

    def __setitem__(self, key: str, value: Any) -> None:
        _check(key, value)
        super().__setitem__(key, value)

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f'Task has no {name!r}') from None

    def to_rp(self) -> Any:
        """This description as a ``radical.pilot.TaskDescription``."""
        import radical.pilot as rp
        return rp.TaskDescription(dict(self))

    def __repr__(self) -> str:
        items = ', '.join(f'{k}={v!r}' for k, v in self.items())
        return f'Task({items})'


def _check(key: str, value: Any) -> None:
    types = _TYPED_KEYS.get(key)
    if types is None:
        return
    if not isinstance(value, types) or isinstance(value, bool):
        names = ' or '.join(t.__name__ for t in types)
        raise UsageTypeError(f'Task {key} must be {names}, not {type(value).__name__}')
    if key in _POSITIVE and value < 1:
        raise UsageValueError(f'Task {key} must be at least 1, not {value}')
    if key in _NON_NEGATIVE and value < 0:
        raise UsageValueError(f'Task {key} must not be negative, not {value}')
