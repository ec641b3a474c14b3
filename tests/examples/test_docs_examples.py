"""The complete programs shown in the documentation run and print what the page says."""

import os
import re
import subprocess
import sys

import pytest

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'docs')


def complete_programs(page):
    """The ```python blocks of ``page`` that run themselves (they call asyncio.run)."""
    text = open(os.path.join(DOCS, page), encoding='utf-8').read()
    blocks = re.findall(r'```python\n(.*?)```', text, re.S)
    return [block for block in blocks if 'asyncio.run(main())' in block]


def expected_output(program):
    """What the program's ``print(...)  # value`` lines say it prints, in order."""
    return re.findall(r'print\(.*\)\s+#\s*(\S+)', program)


@pytest.mark.parametrize('page', ['backends/index.md'])
def test_page_programs_run(page, tmp_path):
    programs = complete_programs(page)
    assert programs, f'{page} shows no complete program'
    for program in programs:
        proc = subprocess.run([sys.executable, '-c', program], capture_output=True, text=True,
                              cwd=tmp_path, timeout=120,
                              env=dict(os.environ, RADICAL_ASYNCFLOW_PROFILE='0'))
        assert proc.returncode == 0, proc.stderr
        printed, expected = proc.stdout.split(), expected_output(program)
        assert expected and printed, proc.stdout
        # a print in a loop prints its value once per round
        rounds = len(printed) // len(expected)
        assert rounds >= 1 and printed == expected * rounds, proc.stdout
