"""The real Amp CLI (`amp -x`) pointed at the proxy with AMP_URL — as far as it can go offline.

What this covers: the pinned CLI's control-plane calls (getUserInfo, loadPlugins, loadSkills, thread
creation) and its thread WebSocket pass through the proxy to the (fake) Amp upstream, with the proxy
client key the CLI sends replaced by the proxy's Amp key.

What it cannot cover, and why the run is *expected to fail*: this CLI generation ("Neo") creates a
thread with `POST /api/thread-actors`, then opens a WebSocket to
`/actors/gateway/threadActor/websocket/?rvt-namespace=default&rvt-method=get&rvt-key=<thread id>`
(Rivet actor protocol, subprotocols `rivet`, `rivet_encoding.bare`, `rivet_conn_params.{wsToken, …,
"transport":"json-rpc"}`). The agent loop and model inference run in Amp's cloud actor; the CLI makes no
`/api/provider/*` call at all, so its answer can never come from cliproxy's local models. The proxy
carries the WebSocket to the upstream, but the fake only echoes and does not implement that
undocumented protocol, so the CLI stops with "Unexpected error" once connected.
"""

import subprocess

from tests.e2e.test_amp import AMP_KEY, CLIENT_KEY, config
from tests.fakes.ampcode import FakeAmpcode
from tests.npmtools import npm_tool
from tests.proxyproc import start_proxy


def test_amp_cli_control_plane_goes_through_the_proxy(tmp_path, proxy_home, backend_server, backend):
    amp = npm_tool("@ampcode/cli", "amp")
    home = tmp_path / "home"
    home.mkdir()
    with FakeAmpcode() as ampcode:
        proxy = start_proxy(tmp_path / "p", config(proxy_home, backend_server, ampcode.base_url))
        try:
            result = subprocess.run(
                [str(amp), "-x", "Say hello"],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
                cwd=home,
                env={
                    "PATH": "/usr/bin:/bin:/usr/local/bin",
                    "HOME": str(home),
                    "AMP_URL": proxy.base_url,
                    "AMP_API_KEY": CLIENT_KEY,
                    "AMP_SKIP_UPDATE_CHECK": "1",
                },
            )
        finally:
            proxy.stop()
    calls = [(r.path, r.raw_query) for r in ampcode.received]
    assert ("/api/internal", "getUserInfo") in calls and ("/api/internal", "loadPlugins") in calls
    assert ("/api/thread-actors", "") in calls
    for r in ampcode.received:
        assert r.headers["authorization"] == f"Bearer {AMP_KEY}" and CLIENT_KEY not in str(r.headers)
        assert r.path.startswith("/actors/") or r.headers["x-amp-client-application"].startswith("CLI")
    assert not [p for p, _ in calls if p.startswith("/api/provider/")] and backend.received == []
    assert any(p.startswith("/actors/gateway/threadActor/websocket") for p, _ in calls)  # the WebSocket got through
    # The documented stopping point (see the module docstring), not a success:
    assert result.returncode != 0 and "Unexpected error" in result.stderr, result.stderr[-2000:]
