"""`cliproxy run` starts the proxy from an installed package, outside any checkout."""

import subprocess
import sys
from pathlib import Path

import httpx

from tests.fakes.accounts import mint_account
from tests.proxyproc import REPO, start_proxy


def test_cliproxy_run_serves_from_an_installed_package(tmp_path, backend):
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    assert (site / "cliproxy" / "addons" / "cliproxy.py").is_file() and not (site / "addons").exists()  # one namespace
    mint_account(tmp_path / "auth")
    cli = (sys.executable, "-c", "import sys; from cliproxy.scripts.cli import main; sys.exit(main())", "run")
    proxy = start_proxy(
        tmp_path / "run",
        {"auth-dir": str(tmp_path / "auth"), "codex-base-url": backend.base_url},
        launcher=cli,
        env={"PYTHONPATH": str(site)},
    )
    try:
        assert f"Loading script {site / 'cliproxy' / 'addons' / 'cliproxy.py'}" in proxy.log
        r = httpx.post(proxy.base_url + "/v1/chat/completions", json={"model": "gpt-5.5", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "You said: hi"
    finally:
        proxy.stop()
    assert Path(proxy.confdir, "mitmproxy-ca-cert.pem").exists()
