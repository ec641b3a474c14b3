"""Unit tests of the dependency graph: node states, counts and transitions."""

import pytest

from radical.asyncflow.core.graph import (FINISHED, DependencyGraph, InvalidTransition, Node,
                                     NodeState, transition)


class N(Node):
    __slots__ = ('name',)

    def __init__(self, name):
        super().__init__()
        self.name = name

    def __repr__(self):
        return f'<{self.name}>'


def test_new_node_waits_with_nothing_unmet():
    node = N('a')
    assert node.state is NodeState.WAITING
    assert node.unmet == 0
    assert not node.dependents
    assert not node.finished


def test_node_without_dependencies_is_ready_at_once():
    graph = DependencyGraph()
    node = N('a')
    assert graph.add(node, []) is None
    assert node.state is NodeState.READY
    assert graph.pending == 1


def test_unfinished_dependencies_are_counted_and_linked():
    graph = DependencyGraph()
    a, b, c = N('a'), N('b'), N('c')
    graph.add(a, [])
    graph.add(b, [])
    assert graph.add(c, [a, b]) is None
    assert c.state is NodeState.WAITING
    assert c.unmet == 2
    assert a.dependents == [c] and b.dependents == [c]


def test_done_dependency_counts_as_met():
    graph = DependencyGraph()
    a, b = N('a'), N('b')
    graph.add(a, [])
    graph.succeed(a)
    assert graph.add(b, [a]) is None
    assert b.unmet == 0
    assert b.state is NodeState.READY


@pytest.mark.parametrize('outcome', [NodeState.FAILED, NodeState.CANCELED])
def test_adding_after_a_finished_bad_dependency_returns_it(outcome):
    graph = DependencyGraph()
    ok, bad, node = N('ok'), N('bad'), N('node')
    graph.add(ok, [])
    graph.add(bad, [])
    graph.abort(bad, outcome)
    assert graph.add(node, [ok, bad]) is bad
    assert node.state is NodeState.WAITING     # the caller finishes it
    assert node.unmet == 0


def test_succeed_releases_a_dependent_only_when_all_dependencies_are_done():
    graph = DependencyGraph()
    a, b, c, d = N('a'), N('b'), N('c'), N('d')
    graph.add(a, [])
    graph.add(b, [a])
    graph.add(c, [a])
    graph.add(d, [b, c])
    assert graph.succeed(a) == [b, c]
    assert a.state is NodeState.DONE and a.dependents is None
    assert graph.succeed(b) == []
    assert d.unmet == 1 and d.state is NodeState.WAITING
    assert graph.succeed(c) == [d]
    assert d.state is NodeState.READY
    assert graph.pending == 1          # only d is unfinished


def test_abort_returns_unfinished_dependents_and_marks_the_node():
    graph = DependencyGraph()
    a, b, c = N('a'), N('b'), N('c')
    graph.add(a, [])
    graph.add(b, [a])
    graph.add(c, [a])
    graph.abort(c, NodeState.CANCELED)
    assert graph.abort(a, NodeState.FAILED) == [b]
    assert a.state is NodeState.FAILED
    assert graph.pending == 1


def test_abort_of_a_finished_node_keeps_its_state():
    graph = DependencyGraph()
    a = N('a')
    graph.add(a, [])
    graph.abort(a, NodeState.CANCELED)
    assert graph.abort(a, NodeState.FAILED) == []
    assert a.state is NodeState.CANCELED
    assert graph.pending == 0


def test_abort_rejects_a_non_failure_outcome():
    graph = DependencyGraph()
    a = N('a')
    graph.add(a, [])
    with pytest.raises(ValueError):
        graph.abort(a, NodeState.DONE)


@pytest.mark.parametrize('path', [
    [NodeState.READY, NodeState.SUBMITTED, NodeState.RUNNING, NodeState.DONE],
    [NodeState.READY, NodeState.SUBMITTED, NodeState.FAILED],
    [NodeState.READY, NodeState.CANCELED],
    [NodeState.FAILED],
    [NodeState.CANCELED],
])
def test_allowed_transitions(path):
    node = N('a')
    for state in path:
        transition(node, state)
        assert node.state is state
    assert node.finished is (path[-1] in FINISHED)


@pytest.mark.parametrize('start, bad', [
    ([], NodeState.SUBMITTED),
    ([], NodeState.RUNNING),
    ([], NodeState.DONE),
    ([NodeState.READY], NodeState.RUNNING),
    ([NodeState.READY, NodeState.SUBMITTED, NodeState.RUNNING], NodeState.SUBMITTED),
    ([NodeState.READY, NodeState.SUBMITTED, NodeState.DONE], NodeState.FAILED),
    ([NodeState.FAILED], NodeState.READY),
    ([NodeState.CANCELED], NodeState.DONE),
])
def test_forbidden_transitions_raise_and_keep_the_state(start, bad):
    node = N('a')
    for state in start:
        transition(node, state)
    before = node.state
    with pytest.raises(InvalidTransition):
        transition(node, bad)
    assert node.state is before


def test_succeeding_twice_is_an_invalid_transition():
    graph = DependencyGraph()
    a = N('a')
    graph.add(a, [])
    graph.succeed(a)
    with pytest.raises(InvalidTransition):
        graph.succeed(a)


def test_long_chain_releases_one_node_at_a_time():
    graph = DependencyGraph()
    nodes = [N(str(i)) for i in range(2000)]
    graph.add(nodes[0], [])
    for prev, node in zip(nodes, nodes[1:]):
        graph.add(node, [prev])
    released = [nodes[0]]
    for node in nodes:
        ready = graph.succeed(node)
        released.extend(ready)
    assert released == nodes
    assert graph.pending == 0


def test_wide_fan_in_becomes_ready_after_the_last_dependency():
    graph = DependencyGraph()
    deps = [N(str(i)) for i in range(1000)]
    for dep in deps:
        graph.add(dep, [])
    sink = N('sink')
    graph.add(sink, deps)
    assert sink.unmet == 1000
    for dep in deps[:-1]:
        assert graph.succeed(dep) == []
    assert graph.succeed(deps[-1]) == [sink]


def test_graph_module_does_not_use_asyncio():
    import radical.asyncflow.core.graph as graph_module
    assert 'asyncio' not in vars(graph_module)
