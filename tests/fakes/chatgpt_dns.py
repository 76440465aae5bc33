"""Test-only mitmproxy script, loaded after cliproxy's: plays DNS for chatgpt.com.

Every request still bound for chatgpt.com after cliproxy's hooks (the Codex CLI's workspace
discovery, model list, plugins, analytics; anything cliproxy passes through) goes to the local fake
named by `CLIPROXY_TEST_CHATGPT` (scheme://host:port) instead of the real site, which tests must
never reach. Requests cliproxy answered or pointed at its backend are left as they are.
"""

import os
from urllib.parse import urlsplit

from mitmproxy import http

_TARGET = urlsplit(os.environ["CLIPROXY_TEST_CHATGPT"])


def request(flow: http.HTTPFlow) -> None:
    if flow.request.host == "chatgpt.com" and not flow.response:
        flow.request.scheme, flow.request.host, flow.request.port = _TARGET.scheme, _TARGET.hostname, _TARGET.port
