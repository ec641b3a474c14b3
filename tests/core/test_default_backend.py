"""``WorkflowEngine.create()`` with no backend and nothing configured (issue 22).

As radical.asyncflow 0.6: the engine runs on a local backend and says so in
one line on stderr.  What ``RADICAL_ASYNCFLOW_BACKEND`` (or the config file,
or ``radical-asyncflow-run``) chose wins, silently; ``dry_run=True`` keeps Noop.
"""

import os
import subprocess
import sys
import textwrap

from radical.asyncflow import WorkflowEngine

PROGRAM = textwrap.dedent('''
    import asyncio
    from radical.asyncflow import WorkflowEngine

    async def main():
        flow = await WorkflowEngine.create()
        @flow.function_task
        async def double(x):
            return 2 * x
        print(type(flow.backend).__name__, await double(21))
        await flow.shutdown()

    asyncio.run(main())
''')


def _clean_environment(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith('RADICAL_ASYNCFLOW_')}
    return dict(env, RADICAL_ASYNCFLOW_PROGRESS='0', **extra)


def test_nothing_configured_runs_locally_with_a_one_line_warning(tmp_path):
    proc = subprocess.run([sys.executable, '-c', PROGRAM], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120, env=_clean_environment())
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['LocalExecutionBackend', '42']
    warnings = [line for line in proc.stderr.splitlines() if 'warning' in line]
    assert len(warnings) == 1, proc.stderr
    assert 'got no backend' in warnings[0] and 'LocalExecutionBackend' in warnings[0]


def test_a_configured_backend_wins_without_a_warning(tmp_path):
    proc = subprocess.run([sys.executable, '-c', PROGRAM], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120,
                          env=_clean_environment(RADICAL_ASYNCFLOW_BACKEND='noop'))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ['NoopExecutionBackend', 'None']
    assert 'warning' not in proc.stderr, proc.stderr


async def test_dry_run_keeps_the_noop_backend(monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith('RADICAL_ASYNCFLOW_'):
            monkeypatch.delenv(name)
    engine = await WorkflowEngine.create(dry_run=True)
    try:
        assert type(engine.backend).__name__ == 'NoopExecutionBackend'
    finally:
        await engine.shutdown()
    assert 'got no backend' not in capsys.readouterr().err
