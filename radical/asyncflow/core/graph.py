"""The dependency graph: which components wait for which.

Pure bookkeeping, no asyncio: each node keeps the number of dependencies
that have not finished yet and the list of nodes waiting for it.  Finishing
a node is O(number of its dependents); a node is ready the moment its count
reaches zero.  The engine subclasses :class:`Node` for its records.
"""

from __future__ import annotations

import enum
from typing import Callable, Iterable, List, Optional

from ..errors import InvalidTransition, UsageValueError


class NodeState(enum.Enum):
    """Life of a workflow component, from registration to its outcome."""

    WAITING = 'WAITING'        # some dependency has not finished
    READY = 'READY'            # every dependency succeeded; not yet handed on
    SUBMITTED = 'SUBMITTED'    # handed to the backend (or started, for blocks)
    RUNNING = 'RUNNING'        # the backend reported it running
    DONE = 'DONE'
    FAILED = 'FAILED'
    CANCELED = 'CANCELED'
    CANCELLED = 'CANCELED'     # the other spelling, an alias


FINISHED = frozenset({NodeState.DONE, NodeState.FAILED, NodeState.CANCELED})

# Allowed next states, kept on each member as a tuple: membership in a short
# tuple compares by identity, which is cheaper than hashing an Enum member.
_ALLOWED = {
    NodeState.WAITING: (NodeState.READY, NodeState.FAILED, NodeState.CANCELED),
    NodeState.READY: (NodeState.SUBMITTED, NodeState.DONE, NodeState.FAILED,
                      NodeState.CANCELED),
    # SUBMITTED/RUNNING -> READY: a failed attempt is tried again (retries).
    NodeState.SUBMITTED: (NodeState.RUNNING, NodeState.DONE, NodeState.FAILED,
                          NodeState.CANCELED, NodeState.READY),
    NodeState.RUNNING: (NodeState.DONE, NodeState.FAILED, NodeState.CANCELED,
                        NodeState.READY),
}
# ``index``: a small int per state, for list-based counters (see monitor.py).
for _index, _state in enumerate(NodeState):
    _state.next_states = _ALLOWED.get(_state, ())
    _state.is_finished = _state in FINISHED
    _state.index = _index
del _index, _state


class Node:
    """A vertex of the graph: an unmet-dependency count and its dependents."""

    __slots__ = ('unmet', 'dependents', 'state', 'observer')

    def __init__(self) -> None:
        self.unmet = 0
        self.dependents: Optional[List['Node']] = None
        self.state = NodeState.WAITING
        #: None, or ``observer(node, old_state, new_state)``, called after each change.
        self.observer: Optional[Callable[['Node', NodeState, NodeState], None]] = None

    @property
    def finished(self) -> bool:
        """Whether the node reached DONE, FAILED or CANCELED."""
        return self.state.is_finished


def transition(node: Node, new_state: NodeState) -> None:
    """The one place a node's state changes; its observer hears of every change."""
    old = node.state
    if new_state not in old.next_states:
        raise InvalidTransition(f'{node!r}: {old.name} -> {new_state.name}')
    node.state = new_state
    observer = node.observer
    if observer is not None:
        observer(node, old, new_state)


class DependencyGraph:
    """Tracks unmet dependencies and hands out nodes as they become ready."""

    __slots__ = ('pending',)

    def __init__(self) -> None:
        self.pending = 0      # nodes added and not finished

    def add(self, node: Node, dependencies: Iterable[Node]) -> Optional[Node]:
        """Add ``node`` after ``dependencies``.

        Returns None when the node waits (or is ready: check ``node.state``),
        or the first dependency that already failed or was cancelled, in
        which case the node was not added and must be finished by the caller
        with that outcome.
        """
        self.pending += 1
        for dep in dependencies:
            state = dep.state
            if state is NodeState.DONE:
                continue
            if state is NodeState.FAILED or state is NodeState.CANCELED:
                self._unlink(node)
                return dep
            if dep.dependents is None:
                dep.dependents = [node]
            else:
                dep.dependents.append(node)
            node.unmet += 1
        if node.unmet == 0:
            transition(node, NodeState.READY)
        return None

    def _unlink(self, node: Node) -> None:
        # Edges already made stay; the dependents lists tolerate finished
        # nodes, so only the count needs resetting.
        node.unmet = 0

    def succeed(self, node: Node) -> List[Node]:
        """Mark ``node`` DONE; return the dependents that became ready."""
        transition(node, NodeState.DONE)
        self.pending -= 1
        dependents, node.dependents = node.dependents, None
        ready = []
        if dependents:
            for dep in dependents:
                dep.unmet -= 1
                if dep.unmet == 0 and dep.state is NodeState.WAITING:
                    transition(dep, NodeState.READY)
                    ready.append(dep)
        return ready

    def abort(self, node: Node, outcome: NodeState) -> List[Node]:
        """Mark ``node`` FAILED or CANCELED; return its unfinished dependents.

        The caller finishes each of them (which aborts theirs in turn).
        """
        if outcome not in (NodeState.FAILED, NodeState.CANCELED):
            raise UsageValueError(f'abort takes FAILED or CANCELED, not {outcome}')
        if not node.state.is_finished:
            transition(node, outcome)
            self.pending -= 1
        dependents, node.dependents = node.dependents, None
        return [dep for dep in dependents or () if not dep.state.is_finished]
