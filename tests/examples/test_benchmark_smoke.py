"""benchmarks/engine.py runs end to end and writes complete JSON (no timing assertions)."""

import json
import pathlib
import subprocess
import sys

BENCHMARK = pathlib.Path(__file__).resolve().parents[2] / 'benchmarks' / 'engine.py'
WORKLOADS = {'W1', 'W2', 'W3', 'W4', 'W5', 'R1', 'R3'}


def test_quick_benchmark_writes_every_workload(tmp_path):
    out = tmp_path / 'engine.json'
    proc = subprocess.run([sys.executable, str(BENCHMARK), '--quick', '--json', str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    figures = json.loads(out.read_text())
    rows = figures['results']
    assert {r['workload'] for r in rows} == WORKLOADS
    for workload in WORKLOADS:
        impls = {r['impl'] for r in rows if r['workload'] == workload}
        assert impls == {'ours', 'plain'}, workload
    for r in rows:
        where = f"{r['workload']} n={r['n']} {r['impl']}"
        assert r['errors'] == 0, f"{where}: {r['first_error']}"
        assert r['tasks'] > 0 and r['seconds'] > 0 and r['tasks_per_s'] > 0, where
        if r['impl'] == 'ours':
            assert r['held_per_task'] > 0, where
    assert 'routing cost R1 vs W1' in proc.stdout and 'routing cost R3 vs W3' in proc.stdout
