"""Which face of a backend the engine drives: our backends natively, a program's
dict-protocol code through the adapter."""

import pytest

from radical.asyncflow.backends.execution.concurrent import ConcurrentExecutionBackend
from radical.asyncflow.backends.execution.dask_parallel import DaskExecutionBackend
from radical.asyncflow.backends.execution.legacy import speaks_natively
from radical.asyncflow.backends.execution.noop import NoopExecutionBackend
from radical.asyncflow.backends.execution.radical_pilot.backend import RadicalExecutionBackend

OURS = [ConcurrentExecutionBackend, DaskExecutionBackend, NoopExecutionBackend,
        RadicalExecutionBackend]


@pytest.mark.parametrize('cls', OURS, ids=lambda c: c.__name__)
def test_our_backends_are_driven_natively(cls):
    # RP and Dask shape their own dict face (build_task, states): still native,
    # so the engine reaches their export_output, cancel_task and placement reports.
    assert speaks_natively(cls.__new__(cls))


@pytest.mark.parametrize('cls', OURS, ids=lambda c: c.__name__)
def test_a_program_overriding_the_dict_face_is_driven_through_it(cls):
    class Program(cls):
        async def submit_tasks(self, tasks):
            pass

    assert not speaks_natively(Program.__new__(Program))


def test_a_plain_dict_protocol_backend_is_adapted():
    from foreign_backend import ForeignBackend
    assert not speaks_natively(ForeignBackend())
