"""Start the real `mitmdump -s addons/cliproxy.py` on 127.0.0.1 for end-to-end tests."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
ADDON = REPO / "addons" / "cliproxy.py"
MITMDUMP = Path(sys.executable).parent / "mitmdump"
_LISTENING = re.compile(r"(HTTP\(S\) proxy|reverse proxy to \S+) listening at \S+:(\d+)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Proxy:
    proc: subprocess.Popen
    regular_port: int
    base_port: int
    confdir: Path
    config_path: Path
    lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.base_port}"

    @property
    def proxy_url(self) -> str:
        return f"http://127.0.0.1:{self.regular_port}"

    @property
    def ca(self) -> str:
        return str(self.confdir / "mitmproxy-ca-cert.pem")

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def write_config(self, config: dict[str, Any], wait_for: str = "config") -> None:
        """Rewrite the config file and wait until the running proxy has reloaded it."""
        mark = len(self.lines)
        self.config_path.write_text(yaml.safe_dump(config))
        self.wait_log(wait_for, start=mark)

    def wait_log(self, text: str, start: int = 0, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.lines[start:]:
                if text in line:
                    return line
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not in the proxy log:\n{self.log[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def start_proxy(
    tmp: Path,
    config: dict[str, Any],
    *extra: str,
    env: dict[str, str] | None = None,
    launcher: tuple[str, ...] = (str(MITMDUMP), "-s", str(ADDON)),
    listen_host: str = "127.0.0.1",
) -> Proxy:
    """Run mitmdump with the addon (or `launcher`, e.g. `cliproxy run`), a fresh confdir (CA) and the given cliproxy
    config; both listeners bind to `listen_host` (clients still reach them on 127.0.0.1)."""
    tmp.mkdir(parents=True, exist_ok=True)
    confdir = tmp / "mitmproxy"
    config_path = tmp / "cliproxy.yaml"
    config_path.write_text(yaml.safe_dump(config))
    regular, base = free_port(), free_port()
    cmd = [
        *launcher,
        "--listen-host",
        listen_host,
        "--listen-port",
        str(regular),
        "--set",
        f"cliproxy_listen={listen_host}:{base}",
        "--set",
        f"cliproxy_config={config_path}",
        "--set",
        f"confdir={confdir}",
        "--set",
        f"flow_detail={os.environ.get('CLIPROXY_FLOW_DETAIL', '0')}",
        *extra,
    ]
    run_env = {**os.environ, "HOME": str(tmp), **(env or {})}
    for name in ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy", "all_proxy"):
        run_env.pop(name, None)
    proc = subprocess.Popen(cmd, cwd=tmp, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proxy = Proxy(proc, regular, base, confdir, config_path)
    ports: set[int] = set()

    def drain() -> None:
        for line in proc.stdout:
            proxy.lines.append(line.rstrip("\n"))
            if m := _LISTENING.search(line):
                ports.add(int(m[2]))

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + 30
    while ports != {regular, base}:
        if proc.poll() is not None or time.monotonic() > deadline:
            proxy.stop()
            raise RuntimeError(f"mitmdump did not start:\n{proxy.log}")
        time.sleep(0.05)
    return proxy
