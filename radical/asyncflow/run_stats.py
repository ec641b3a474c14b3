"""Process-wide counts of what the engines in this process did.

``radical-asyncflow-run`` reads them after the driver returns to choose its
exit status; they cost one integer increment per finished component.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List


@dataclass
class RunStats:
    """Counters over every engine created in this process."""

    engines_created: int = 0
    done: int = 0
    failed: int = 0
    canceled: int = 0
    #: The run summary of each engine shut down (see radical.asyncflow.monitor).
    summaries: List[Dict[str, Any]] = field(default_factory=list)


STATS = RunStats()
