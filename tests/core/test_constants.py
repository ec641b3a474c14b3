"""TasksMainStates and the per-backend StateMapper."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from radical.asyncflow import ConcurrentExecutionBackend, NoopExecutionBackend
from radical.asyncflow.constants import StateMapper, TasksMainStates


@pytest.fixture(autouse=True)
def private_registry(monkeypatch):
    """Registrations made by a test do not leak into the others."""
    monkeypatch.setattr(StateMapper, '_registry', dict(StateMapper._registry))


def test_main_states_are_exactly_the_four():
    assert {s.name for s in TasksMainStates} == {'DONE', 'FAILED', 'CANCELED', 'RUNNING'}
    assert TasksMainStates['DONE'] is TasksMainStates.DONE


def test_register_and_look_up_a_backend_by_name():
    StateMapper.register_backend_states('mysystem', done_state='finished', failed_state='error',
                                        canceled_state='killed', running_state='executing')
    mapper = StateMapper('mysystem')
    assert (mapper.DONE, mapper.FAILED, mapper.CANCELED, mapper.RUNNING) == \
        ('finished', 'error', 'killed', 'executing')
    assert mapper.to_main_state('finished') is TasksMainStates.DONE
    assert mapper.to_main_state('error') is TasksMainStates.FAILED
    assert mapper.to_main_state('killed') is TasksMainStates.CANCELED
    assert mapper.to_main_state('executing') is TasksMainStates.RUNNING
    assert mapper.get_backend_state(TasksMainStates.CANCELED) == 'killed'
    assert mapper.get_backend_state('running') == 'executing'
    assert set(mapper.terminal_states) == {'finished', 'error', 'killed'}


def test_positional_registration_keeps_the_argument_order():
    StateMapper.register_backend_states('positional', 'D', 'F', 'C', 'R')
    mapper = StateMapper('positional')
    assert (mapper.DONE, mapper.FAILED, mapper.CANCELED, mapper.RUNNING) == ('D', 'F', 'C', 'R')


def test_extra_states_become_attributes():
    StateMapper.register_backend_states('extras', done_state='DONE', failed_state='FAILED',
                                        canceled_state='CANCELED', running_state='RUN',
                                        INITIAL='NEW', SCHEDULING='QUEUED')
    mapper = StateMapper('extras')
    assert mapper.INITIAL == 'NEW'
    assert mapper.SCHEDULING == 'QUEUED'
    assert mapper.RUNNING == 'RUN'
    with pytest.raises(AttributeError):
        mapper.NOT_A_STATE


def test_non_string_state_values_are_kept():
    StateMapper.register_backend_states('ints', done_state=0, failed_state=1,
                                        canceled_state=2, running_state=3)
    mapper = StateMapper('ints')
    assert mapper.FAILED == 1
    assert mapper.to_main_state(2) is TasksMainStates.CANCELED


def test_backend_may_be_given_as_class_or_instance():
    class FancyExecutionBackend:
        pass

    StateMapper.register_backend_states(FancyExecutionBackend, done_state='ok',
                                        failed_state='ko', canceled_state='gone',
                                        running_state='busy')
    assert StateMapper(FancyExecutionBackend).DONE == 'ok'
    assert StateMapper(FancyExecutionBackend()).FAILED == 'ko'


def test_re_registration_replaces_the_states():
    StateMapper.register_backend_states('again', 'a', 'b', 'c', 'd')
    StateMapper.register_backend_states('again', 'w', 'x', 'y', 'z')
    assert StateMapper('again').DONE == 'w'


def test_unknown_backend_is_an_error_naming_it():
    with pytest.raises(ValueError, match='no_such_backend'):
        StateMapper('no_such_backend')


def test_unknown_state_value_is_an_error():
    StateMapper.register_backend_states('strict', 'a', 'b', 'c', 'd')
    with pytest.raises(ValueError, match='zzz'):
        StateMapper('strict').to_main_state('zzz')


@pytest.mark.parametrize('make', [
    lambda: NoopExecutionBackend(),
    lambda: ConcurrentExecutionBackend(ThreadPoolExecutor(1))], ids=['noop', 'concurrent'])
def test_builtin_backends_map_their_states_without_registering_them(make):
    before = dict(StateMapper._registry)
    backend = make()
    mapper = backend.get_task_states_map()
    for main in TasksMainStates:
        assert mapper.to_main_state(getattr(mapper, main.name)) is main
    # the registry is the programs': constructing a backend changes nothing process-wide
    assert StateMapper._registry == before


def test_of_and_defaults_make_mappers_without_registering():
    mapped = StateMapper.of('elsewhere', done_state='ok', failed_state='ko',
                            canceled_state='off', running_state='on', queued='q')
    assert (mapped.DONE, mapped.QUEUED) == ('ok', 'q')
    assert mapped.to_main_state('ko') is TasksMainStates.FAILED
    assert StateMapper.defaults('x').RUNNING == 'RUNNING'
    with pytest.raises(ValueError):
        StateMapper('elsewhere')
