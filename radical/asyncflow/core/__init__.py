"""The engine core: the dependency graph, typed records, the scheduler, outcomes,
decorators, routing over backends, and the engine.

Imports nothing of :mod:`radical.asyncflow.observability`,
:mod:`radical.asyncflow.campaign` or :mod:`radical.asyncflow.cli`: those
layers plug in through the interfaces defined here.
"""
