"""Code-aware task identities (radical.asyncflow.campaign.identity): pure functions."""

import os
import subprocess
import sys
import textwrap
import types

import pytest

from radical.asyncflow.campaign import identity
from radical.asyncflow.campaign.identity import (
    Occurrences, Recorded, call_digest, code_fingerprint, command_fingerprint,
    description_fingerprint, task_key, why_again)


def load(source, name='analyze', filename='/home/user/campaign/driver.py', module='driver',
         **namespace):
    """Compile ``source`` as a fresh module and return its function ``name``."""
    ns = {'__name__': module, **namespace}
    exec(compile(textwrap.dedent(source), filename, 'exec'), ns)
    return ns[name]


def digest(source, **kw):
    # A fresh _Fingerprinter: the module cache is per function object anyway,
    # but each test should see no state of another.
    return identity._Fingerprinter().function(load(source, **kw)).digest


BASE = '''
async def analyze(x):
    return x * 2
'''


# ------------------------------------------- what does not change an identity

@pytest.mark.parametrize('variant', [
    # a comment
    '''
    async def analyze(x):
        # doubles x
        return x * 2
    ''',
    # a docstring
    '''
    async def analyze(x):
        """Double x."""
        return x * 2
    ''',
    # other lines above it (every line number moves)
    '''


    IGNORED = None



    async def analyze(x):
        return x * 2
    ''',
    # formatting
    '''
    async def analyze(x) :
        return (
            x
            *
            2
        )
    ''',
    # a pass statement (a NOP in the bytecode)
    '''
    async def analyze(x):
        pass
        return x * 2
    ''',
], ids=['comment', 'docstring', 'line-numbers', 'formatting', 'nop'])
def test_comments_docstrings_formatting_do_not_change_the_code_identity(variant):
    assert digest(variant) == digest(BASE)


def test_the_file_the_function_is_in_does_not_count():
    assert digest(BASE, filename='/elsewhere/driver.py') == digest(BASE)


# ------------------------------------------------- what changes an identity

@pytest.mark.parametrize('variant', [
    'async def analyze(x):\n    return x * 3\n',
    'async def analyze(x):\n    return x + 2\n',
    'async def analyze(y):\n    return y * 2\n',
    'async def analyze(x=1):\n    return x * 2\n',
    'async def analyze(x):\n    return list(map(lambda v: v * 2, [x]))[0]\n',
], ids=['constant', 'operator', 'parameter-name', 'default', 'lambda'])
def test_a_change_of_behaviour_changes_the_code_identity(variant):
    assert digest(variant) != digest(BASE)


def test_a_changed_lambda_inside_changes_the_code_identity():
    one = 'async def analyze(x):\n    return list(map(lambda v: v * 2, x))\n'
    two = 'async def analyze(x):\n    return list(map(lambda v: v * 3, x))\n'
    assert digest(one) != digest(two)


def test_a_changed_nested_function_changes_the_code_identity():
    src = '''
    async def analyze(x):
        def inner(v):
            return v * {k}
        return inner(x)
    '''
    assert digest(src.format(k=2)) != digest(src.format(k=3))


def test_a_changed_comprehension_changes_the_code_identity():
    src = 'async def analyze(xs):\n    return [v * {k} for v in xs]\n'
    assert digest(src.format(k=2)) != digest(src.format(k=3))


def test_a_changed_exception_handler_changes_the_code_identity():
    src = '''
    async def analyze(x):
        try:
            return 1 / x
        except {exc}:
            return 0
    '''
    assert digest(src.format(exc='ZeroDivisionError')) != digest(src.format(exc='ValueError'))


HELPER = '''
def normalize(v):
    return v / {k}

async def analyze(x):
    return normalize(x) * 2
'''


def test_a_fix_in_a_helper_changes_the_identity_and_names_the_helper():
    one = identity._Fingerprinter().function(load(HELPER.format(k=10)))
    two = identity._Fingerprinter().function(load(HELPER.format(k=100)))
    assert one.digest != two.digest
    assert two.changed(one.parts) == ['driver.analyze', 'driver.normalize']


def test_helpers_calling_each_other_recursively_terminate():
    src = '''
    def even(n):
        return n == 0 or odd(n - 1)

    def odd(n):
        return n != 0 and even(n - 1)

    async def analyze(x):
        return even(x)
    '''
    assert len(digest(src)) == 64


def test_a_helper_class_in_user_code_is_covered_by_its_methods():
    src = '''
    class Scaler:
        factor = {k}
        def apply(self, v):
            return v * self.factor

    async def analyze(x):
        return Scaler().apply(x)
    '''
    assert digest(src.format(k=2)) != digest(src.format(k=3))


@pytest.mark.parametrize('before, after, changes', [
    ('SCALE = 2', 'SCALE = 3', True),               # a constant: by value
    ("SCALE = 'a'", "SCALE = 'b'", True),
    ('SCALE = (1, 2)', 'SCALE = (1, 3)', True),
    ('SCALE = [2]', 'SCALE = [3]', False),          # a list: by type only (documented)
    ('SCALE = {"k": 2}', 'SCALE = {"k": 3}', False),
])
def test_globals_are_covered_by_value_when_constant_else_by_type(before, after, changes):
    src = '{}\nasync def analyze(x):\n    return x * SCALE\n'
    assert (digest(src.format(before)) != digest(src.format(after))) is changes


def test_a_changed_closure_constant_changes_the_identity():
    src = '''
    def make(k):
        async def analyze(x):
            return x * k
        return analyze
    '''
    make = load(src, name='make')
    fp = identity._Fingerprinter()
    assert fp.function(make(2)).digest != fp.function(make(3)).digest
    assert fp.function(make(2)).digest == fp.function(make(2)).digest


def test_library_functions_and_modules_are_covered_by_name():
    one = 'import json\nasync def analyze(x):\n    return json.dumps(x)\n'
    two = 'import json\nasync def analyze(x):\n    return json.loads(x)\n'
    assert digest(one) != digest(two)
    # the library's code is not digested: it costs no more than a name
    fp = identity._Fingerprinter()
    ident = fp.function(load(one))
    assert list(ident.parts) == ['driver.analyze']


def test_an_attribute_of_a_user_module_is_covered(tmp_path):
    helpers = types.ModuleType('my_helpers')
    helpers.__file__ = str(tmp_path / 'my_helpers.py')
    src = 'async def analyze(x):\n    return my_helpers.scale(x)\n'
    results = []
    for k in (2, 3):
        exec(compile(f'def scale(v):\n    return v * {k}\n', helpers.__file__, 'exec'),
             vars(helpers))
        results.append(identity._Fingerprinter().function(
            load(src, my_helpers=helpers)).digest)
    assert results[0] != results[1]


def test_a_decorated_task_is_fingerprinted_through_its_wrapper():
    import functools
    func = load(BASE)

    @functools.wraps(func)
    def wrapper(*a):
        return func(*a)

    assert identity._Fingerprinter().function(wrapper).digest == digest(BASE)


SET_SOURCE = '''
LABELS = frozenset({"alpha", "beta", "gamma", "delta", "epsilon"})
async def analyze(x):
    return x in {"one", "two", "three", "four"} and x in LABELS
'''


def test_the_code_identity_is_stable_across_processes_and_hash_seeds(tmp_path):
    driver = tmp_path / 'drv.py'
    driver.write_text(SET_SOURCE)
    code = (f'import sys; sys.path.insert(0, {str(tmp_path)!r}); import drv; '
            f'from radical.asyncflow.campaign.identity import code_fingerprint as f; '
            f'print(f(drv.analyze).digest)')
    seen = {subprocess.run([sys.executable, '-c', code], capture_output=True, text=True,
                           check=True, env=dict(os.environ, PYTHONHASHSEED=str(seed))
                           ).stdout.strip() for seed in (0, 1, 2, 3)}
    assert len(seen) == 1 and len(seen.pop()) == 64


def test_the_code_identity_is_cached_per_function_object():
    func = load(BASE)
    assert code_fingerprint(func) is code_fingerprint(func)


# ---------------------------------------------------------------- commands

def test_the_command_and_the_keys_that_change_what_runs_are_covered():
    base = command_fingerprint('echo v1', {'ranks': 2})
    assert command_fingerprint('echo v2', {'ranks': 2}) != base
    assert command_fingerprint('echo v1', {'ranks': 4, 'cores_per_rank': 8}) == base
    env = command_fingerprint('echo v1', {'environment': {'A': '1', 'B': '2'}})
    assert command_fingerprint('echo v1', {'environment': {'B': '2', 'A': '1'}}) == env
    assert command_fingerprint('echo v1', {'environment': {'A': '1', 'B': '3'}}) != env
    for key, value in [('pre_exec', ['module load x']), ('named_env', 'py311'),
                       ('executable', '/bin/md'), ('arguments', ['-n', '4'])]:
        assert command_fingerprint('echo v1', {key: value}) != base, key


def test_a_function_tasks_description_counts_only_for_its_run_keys():
    assert description_fingerprint({'ranks': 4}) == ''
    assert description_fingerprint({'named_env': 'a'}) != description_fingerprint(
        {'named_env': 'b'})


# ----------------------------------------------------------- stable positions

def keys_of(calls):
    occ = Occurrences()
    keys = []
    for args in calls:
        _, whole = call_digest('driver.analyze', args, {}, lambda v: None)
        keys.append(task_key(whole, occ.next(whole)))
    return keys


def test_inserting_a_call_shifts_no_other_call():
    before = keys_of([(1,), (2,), (3,)])
    after = keys_of([(1,), (7,), (2,), (3,)])
    assert [after[0], after[2], after[3]] == before


def test_identical_calls_are_told_apart_by_their_occurrence():
    keys = keys_of([(1,), (1,), (2,), (1,)])
    assert len(set(keys)) == 4
    assert keys_of([(1,), (2,), (1,), (1,)])[0::2] + [keys_of([(1,)])[0]] != []
    # inserting another call of f(1) in front shifts only the calls of f(1)
    assert keys_of([(2,), (1,), (1,)])[0] == keys_of([(1,), (2,)])[1]


def test_a_dependency_counts_by_its_key_and_is_told_apart_from_arguments():
    dep_a, dep_b = object(), object()
    keys = {id(dep_a): 'a' * 32, id(dep_b): 'b' * 32}

    def key_of(v):
        return keys.get(id(v))

    plain_a, whole_a = call_digest('m.f', (dep_a, 1), {}, key_of)
    plain_b, whole_b = call_digest('m.f', (dep_b, 1), {}, key_of)
    assert plain_a == plain_b and whole_a != whole_b


def test_dict_arguments_compare_regardless_of_order():
    one = call_digest('m.f', ({'a': 1, 'b': 2},), {}, lambda v: None)
    two = call_digest('m.f', ({'b': 2, 'a': 1},), {}, lambda v: None)
    assert one == two


# ---------------------------------------------------------------- why

def recorded(**over):
    fields = dict(code='c1', code_parts={'driver.analyze': 'p1'}, command='', description='',
                  inputs='i1', python=identity.python_version())
    fields.update(over)
    return Recorded(**fields)


def test_why_a_task_runs_again_is_one_phrase_per_cause():
    code = identity.CodeIdentity('c2', {'driver.analyze': 'p2'})
    same = identity.CodeIdentity('c1', {'driver.analyze': 'p1'})
    py = identity.python_version()
    assert not why_again('analyze', recorded(), same, None, '', 'i1', [], py)
    assert str(why_again('analyze', recorded(), code, None, '', 'i1', [], py)) == \
        "code of 'analyze' changed"
    assert str(why_again('analyze', recorded(), same, None, '', None, ['simulate'], py)) == \
        "dependency 'simulate' re-ran"
    assert str(why_again('sim', recorded(command='x'), None, 'y', '', 'i1', [], py)) == \
        'command changed'
    assert str(why_again('analyze', None, same, None, '', None, [], py,
                         miss='arguments changed')) == 'arguments changed'
    assert 'Python 3.10' in str(why_again('analyze', recorded(python='3.10'), code, None, '',
                                          'i1', [], py))
    assert 'interrupted' in str(why_again('analyze', recorded(), same, None, '', 'i9', [], py))


def test_a_changed_helper_is_named_in_the_cause():
    code = identity.CodeIdentity('c2', {'driver.analyze': 'p1', 'driver.normalize': 'n2'})
    row = recorded(code_parts={'driver.analyze': 'p1', 'driver.normalize': 'n1'})
    assert str(why_again('analyze', row, code, None, '', 'i1', [], identity.python_version())) \
        == "code of 'analyze' changed (in 'driver.normalize')"
