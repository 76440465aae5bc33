"""The benchmark's quick mode: every metric on every system at a tiny scale, exit 1 only on errors.

ChatMock joins when its side venv is already cached (`python scripts/bench.py --peers` installs it once):
the tests never install it, since they reach no network."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cliproxy.scripts import bench

REPO = Path(__file__).resolve().parents[2]
SCRIPT = str(REPO / "scripts" / "bench.py")


def run(*args: str, timeout: float = 150) -> tuple[int, dict, str]:
    result = subprocess.run([sys.executable, SCRIPT, *args, "--json"], capture_output=True, text=True, timeout=timeout)
    try:
        report = json.loads(result.stdout)
    except ValueError:
        report = {}
    return result.returncode, report, result.stdout[-3000:] + result.stderr[-3000:]


def test_bench_quick_measures_every_metric_without_errors(tmp_path: Path) -> None:
    peers = bench.chatmock_python(False, bench.CHATMOCK_VERSION) is not None
    out = tmp_path / "bench.md"
    code, report, output = run("--quick", "--out", str(out), *(["--peers"] if peers else []))
    assert code == 0, output
    assert report["errors"] == dict.fromkeys(report["systems"], 0)
    systems = ["direct", "bare", "cliproxy", "no-ledger", *(["chatmock"] if peers else [])]
    assert report["systems"] == systems
    values = report["values"]
    for metric in ["ttfb", "stream_chat", "stream_responses", "tiny_chat", "rps1", "rps10", "rps50", "rps200", "cpu", "peak_rss"]:
        assert all(values[metric][s][0] > 0 for s in systems), (metric, values.get(metric))
    assert set(values["stream_messages"]) == set(systems) - {"chatmock"}  # ChatMock has no Messages API
    assert set(values["ws_responses"]) == set(systems) - {"chatmock"}  # nor a WebSocket transport
    assert all(values["ws_responses"][s][0] > 0 for s in set(systems) - {"chatmock"})
    ratios = report["summary"]["ratios"]
    assert {"cliproxy/bare", "cliproxy/no-ledger"} <= set(ratios["ttfb"])
    assert ("cliproxy/chatmock" in ratios["stream_chat"]) == peers
    assert all(report["translators"][r]["median"] > 1000 for r in ("chat", "responses", "messages"))
    assert report["memory"]["requests"] == 300 and report["memory"]["before"] > 10
    assert report["targets"] and all(isinstance(t["met"], bool) for t in report["targets"])
    assert json.loads(out.read_text()) == report
    rendered = subprocess.run([sys.executable, SCRIPT, "--render", str(out)], capture_output=True, text=True, timeout=30).stdout
    header = next(line for line in rendered.splitlines() if line.startswith("| metric |"))
    assert header.startswith("| metric | direct | bare | cliproxy | no-ledger |") and "| cliproxy ÷ bare |" in header
    assert "| time to first byte p50, Chat (ms) |" in rendered and "| target | measured | met |" in rendered
    assert "Errors: none." in rendered


def test_bench_exits_1_on_errors_and_says_what_failed() -> None:
    """A variant whose upstream is unreachable answers 502: that is an error, and the report names it."""
    code, report, output = run(
        "--quick", "--only", "ttfb", "--variant", "dead=--config codex-base-url=http://127.0.0.1:9/backend-api/codex"
    )
    assert code == 1, output
    assert report["errors"]["dead"] == 6 and report["errors"]["cliproxy"] == 0  # the warm-up and 5 timed requests
    assert "HTTP 502" in report["problems"]["dead"][0]
    assert "dead" not in report["summary"]["absolute"]["ttfb"]
