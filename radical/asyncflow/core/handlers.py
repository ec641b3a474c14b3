"""The outcome handlers an engine subclass may override, found in one place.

Programs of radical.asyncflow 0.1-0.5 override ``handle_task_success``,
``handle_task_failure`` and ``handle_task_cancellation``; upstream 0.6
renamed them ``handle_component_*``.  Whichever of the two names a subclass
overrides is called, with the task dict, for that outcome; an engine that
overrides none settles futures directly (the fast path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

#: outcome -> (the 0.1-0.5 name, the 0.6 name)
HANDLER_NAMES = {
    'success': ('handle_task_success', 'handle_component_success'),
    'failure': ('handle_task_failure', 'handle_component_failure'),
    'cancellation': ('handle_task_cancellation', 'handle_component_cancellation'),
}


@dataclass(frozen=True, slots=True)
class CustomHandlers:
    """The overridden handler of each outcome (None: not overridden)."""

    success: Optional[Callable[..., Any]] = None
    failure: Optional[Callable[..., Any]] = None
    cancellation: Optional[Callable[..., Any]] = None

    @classmethod
    def of(cls, engine: Any, base: type) -> Optional['CustomHandlers']:
        """The handlers ``engine``'s class overrides over ``base``; None if it overrides none."""
        found = {}
        for outcome, names in HANDLER_NAMES.items():
            for name in names:
                own = getattr(type(engine), name, None)
                if own is not None and own is not getattr(base, name, None):
                    found[outcome] = getattr(engine, name)
                    break
        return cls(**found) if found else None
