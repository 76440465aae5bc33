"""The benchmark's quick mode runs clean (it fails on errors, never on timings)."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_bench_quick_runs_without_errors():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "bench.py"), "--quick"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "first-byte overhead p50" in result.stdout and "translator events/s" in result.stdout
    assert "websocket vs HTTP: first event p50" in result.stdout  # the Responses WebSocket turns ran, without errors
