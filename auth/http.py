"""HTTP clients for the issuer.

`trust_env=False`: the shell that runs the proxy usually exports HTTPS_PROXY / SSL_CERT_FILE for the
AI tools; token traffic must not loop through cliproxy itself or trust its CA. TLS is verified
against certifi's bundle (httpx's default).
"""

from __future__ import annotations

import httpx

from cliproxy.auth.constants import HTTP_TIMEOUT

HEADERS = {"Accept": "application/json", "User-Agent": "cliproxy"}


def sync_client(timeout: float = HTTP_TIMEOUT) -> httpx.Client:
    return httpx.Client(trust_env=False, timeout=timeout, headers=HEADERS)


def async_client(timeout: float = HTTP_TIMEOUT) -> httpx.AsyncClient:
    return httpx.AsyncClient(trust_env=False, timeout=timeout, headers=HEADERS)
