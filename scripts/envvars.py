"""`cliproxy env`: ready-to-paste shell settings that point tools at a running cliproxy."""

from __future__ import annotations

import shlex
from pathlib import Path

import certifi

BUNDLE_NAME = "cliproxy-ca-bundle.pem"


def ca_bundle(confdir: Path) -> Path | None:
    """Write certifi's roots plus the mitmproxy CA into one file, for tools whose CA variable
    *replaces* the system roots (hosts cliproxy passes through still present their real certificates).
    None when mitmproxy has not created its CA yet."""
    ca = confdir / "mitmproxy-ca-cert.pem"
    if not ca.exists():
        return None
    bundle = confdir / BUNDLE_NAME
    bundle.write_text(Path(certifi.where()).read_text() + "\n" + ca.read_text())
    return bundle


def env_lines(listen: str = "127.0.0.1:8317", proxy: str = "127.0.0.1:8080", confdir: Path = Path("~/.mitmproxy")) -> list[str]:
    confdir = confdir.expanduser()
    ca = confdir / "mitmproxy-ca-cert.pem"
    bundle = ca_bundle(confdir)
    q = shlex.quote
    lines = [
        "# Base-URL mode: tools talk to cliproxy directly (no certificate needed)",
        f"export OPENAI_BASE_URL={q(f'http://{listen}/v1')}",
        f"export ANTHROPIC_BASE_URL={q(f'http://{listen}')}",
        f"export AMP_URL={q(f'http://{listen}')}",
        "",
        "# Proxy mode: tools keep their usual URLs and go through mitmproxy (needs its CA)",
        f"export HTTPS_PROXY={q(f'http://{proxy}')}",
        "export NO_PROXY=localhost,127.0.0.1",
        f"export NODE_EXTRA_CA_CERTS={q(str(ca))}",
    ]
    if bundle is None:
        lines += [f"# {ca} does not exist yet: start cliproxy once (mitmdump -s addons/cliproxy.py), then run this again"]
    else:
        lines += [f"export SSL_CERT_FILE={q(str(bundle))}", f"export CODEX_CA_CERTIFICATE={q(str(bundle))}"]
    return lines
