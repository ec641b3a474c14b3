"""Every examples/*.py runs to completion."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

EXAMPLES_DIR = pathlib.Path(__file__).resolve().parents[2] / 'examples'
MARKERS = {'radical.pilot': 'rp', 'dask': 'dask'}


def _requirements(path):
    """Packages named by '# requires: x, y' comments in the example's first lines."""
    with open(path) as f:
        head = [next(f, '') for _ in range(30)]
    found = []
    for line in head:
        match = re.match(r'\s*#\s*requires:\s*(.+)', line)
        if match:
            found.extend(p.strip() for p in match.group(1).split(','))
    return found


def _params():
    params = []
    for path in sorted(EXAMPLES_DIR.glob('*.py')):
        marks = [getattr(pytest.mark, MARKERS[r]) for r in _requirements(path) if r in MARKERS]
        params.append(pytest.param(path, marks=marks, id=path.name))
    return params


EXAMPLES = _params()

if EXAMPLES:
    @pytest.mark.parametrize('example', EXAMPLES)
    def test_example_runs(example, tmp_path):
        proc = subprocess.run([sys.executable, str(example)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300,
                              env=dict(os.environ, PYTHONUNBUFFERED='1'))
        assert proc.returncode == 0, \
            f'{example.name} exited {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}' \
            f'\nstderr:\n{proc.stderr[-4000:]}'


@pytest.mark.rp
def test_heterogeneous_example_on_a_pilot_and_threads(tmp_path):
    pytest.importorskip('radical.pilot')
    proc = subprocess.run([sys.executable, str(EXAMPLES_DIR / '08_heterogeneous.py'), '--rp'],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONUNBUFFERED='1'))
    assert proc.returncode == 0, f'stdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}'
    assert 'simulations on RadicalExecutionBackend, analysis on ConcurrentExecutionBackend' \
        in proc.stdout
    assert 'every member as expected' in proc.stdout
