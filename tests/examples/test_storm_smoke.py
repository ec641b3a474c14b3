"""benchmarks/storm.py --quick runs end to end and writes complete JSON (no timing assertions)."""

import json
import pathlib
import subprocess
import sys

BENCHMARK = pathlib.Path(__file__).resolve().parents[2] / 'benchmarks' / 'storm.py'
MODES = {'plain', 'profile', 'journal'}


def test_quick_storm_writes_every_mode(tmp_path):
    out = tmp_path / 'storm.json'
    proc = subprocess.run([sys.executable, str(BENCHMARK), '--quick', '--json', str(out)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    figures = json.loads(out.read_text())
    assert figures['threads'] > 0 and figures['burst'] > 0
    rows = figures['results']
    assert {r['mode'] for r in rows} == MODES
    for r in rows:
        where = f"n={r['n']} {r['mode']}"
        assert r['n'] > 0 and r['dropped'] == 0, where
        assert r['total_s'] >= r['storm_s'] > 0 and r['reports_per_s'] > 0, where
        assert r['rss_per_task'] >= 0 and r['peak_rss'] > 0, where
        assert r['lag_max_ms'] >= r['lag_p99_ms'] >= r['lag_median_ms'] >= 0, where
    by_mode = {r['mode']: r for r in rows}
    journal = by_mode['journal']
    assert journal['journal_rows_per_s'] > 0 and journal['journal_commit_rows_per_s'] > 0
    assert journal['journal_bytes_per_task'] > 0
    assert by_mode['profile']['profile_bytes_per_task'] > 0
    assert 'profile_bytes_per_task' not in by_mode['plain']
    assert 'reports/s' in proc.stdout
