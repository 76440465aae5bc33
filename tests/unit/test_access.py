"""The pure access rules: what is loopback, where keys are read from, who is refused and why."""

import base64

import pytest

from cliproxy.addons.core import access


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize(
    "peer,expected",
    [
        ("127.0.0.1", True),
        ("127.255.3.4", True),  # all of 127.0.0.0/8
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # IPv4 loopback on a dual-stack socket
        ("::ffff:127.9.8.7", True),
        ("192.0.2.2", False),  # this machine's own LAN address is not loopback
        ("10.0.0.1", False),
        ("::ffff:192.0.2.2", False),
        ("fe80::1%eth0", False),
        ("fd00::2", False),
        ("0.0.0.0", False),
        ("::", False),
        ("128.0.0.1", False),
        ("localhost", False),  # names are not addresses
        ("", False),
        (None, False),
        ("not-an-ip", False),
    ],
)
def test_is_loopback(peer, expected):
    assert access.is_loopback(peer) is expected


@pytest.mark.parametrize(
    "value,expected",
    [
        (basic("cliproxy", "sk-1"), ["sk-1"]),  # HTTPS_PROXY=http://cliproxy:sk-1@host:8080
        (basic("sk-1", ""), ["sk-1"]),  # HTTPS_PROXY=http://sk-1@host:8080
        (basic("", "sk-1"), ["sk-1"]),
        (basic("user", "pa:ss"), ["pa:ss"]),  # only the first colon splits
        ("basic " + base64.b64encode(b"u:sk-1").decode(), ["sk-1"]),  # scheme is case-insensitive
        ("Bearer sk-1", ["sk-1"]),
        ("bearer   sk-1 ", ["sk-1"]),
        (basic("", ""), []),
        ("Basic " + base64.b64encode(b"no-colon").decode(), []),
        ("Basic !!!not-base64", []),
        ("Basic " + base64.b64encode(b"u:\xff\xfe").decode(), []),  # not UTF-8
        ("Basic", []),
        ("Digest username=x", []),
        ("sk-1", []),
        ("", []),
    ],
)
def test_proxy_keys(value, expected):
    assert access.proxy_keys(value) == expected


@pytest.mark.parametrize(
    "headers,expected",
    [
        ({"authorization": "Bearer sk-1"}, ["sk-1"]),
        ({"authorization": "Basic abc"}, []),
        ({"x-api-key": "sk-2"}, ["sk-2"]),
        ({"x-goog-api-key": "sk-3", "authorization": "bearer sk-1"}, ["sk-1", "sk-3"]),
        ({"proxy-authorization": "Bearer sk-1"}, []),  # not an API header
        ({}, []),
    ],
)
def test_presented_keys(headers, expected):
    assert access.presented_keys(headers) == expected


def test_key_valid_compares_exactly_and_survives_undecodable_bytes():
    assert access.key_valid(["sk-1"], ("sk-0", "sk-1"))
    assert not access.key_valid(["sk-1 "], ("sk-1",))
    assert not access.key_valid(["sk-"], ("sk-1",))
    assert not access.key_valid([], ("sk-1",))
    assert not access.key_valid(["sk-1"], ())
    assert not access.key_valid(["sk-\udcff"], ("sk-1",))  # a non-UTF-8 header byte, as mitmproxy decodes it


@pytest.mark.parametrize(
    "peer,presented,configured,proxy,refused_with",
    [
        ("127.0.0.1", [], (), True, None),  # loopback: no key needed, none configured
        ("::1", [], ("k",), False, None),
        ("192.0.2.2", ["k"], ("k",), True, None),
        ("192.0.2.2", ["k"], ("k",), False, None),
        ("192.0.2.2", [], (), True, "add keys under api-keys"),  # nothing configured: say so
        ("192.0.2.2", ["k"], (), False, "add keys under api-keys"),
        ("192.0.2.2", [], ("k",), True, "Proxy-Authorization"),
        ("192.0.2.2", ["wrong"], ("k",), True, "HTTPS_PROXY=http://cliproxy:KEY@"),
        ("192.0.2.2", ["wrong"], ("k",), False, "x-api-key"),
        (None, [], ("k",), False, "Authorization: Bearer"),  # unknown peer is not loopback
    ],
)
def test_refusal(peer, presented, configured, proxy, refused_with):
    reason = access.refusal(peer, presented, configured, proxy=proxy)
    if refused_with is None:
        assert reason is None
    else:
        assert reason is not None and refused_with in reason


@pytest.mark.parametrize(
    ("host", "local"),
    [
        ("127.0.0.1:8317", True),
        ("127.0.0.1", True),
        ("localhost:8317", True),
        ("LOCALHOST", True),
        ("app.localhost:8317", True),
        ("[::1]:8317", True),
        ("10.0.0.5:8317", True),  # an IP literal: a rebinding page cannot send one (its own name is in the Host)
        ("evil.example:8317", False),
        ("127.0.0.1.nip.io:8317", False),
        ("localhost.evil.example", False),
        ("", False),
        ("[::1", False),
    ],
)
def test_local_host(host, local):
    assert access.local_host(host) is local


@pytest.mark.parametrize(
    ("host", "presented", "refused"),
    [
        ("127.0.0.1:8317", [], False),
        ("rebound.example:8317", [], True),  # a loopback peer naming a DNS host: a rebinding page
        ("rebound.example:8317", ["sk-wrong"], True),
        ("rebound.example:8317", ["sk-good"], False),  # a named host is fine with a key
    ],
)
def test_host_refusal_guards_dns_rebinding(host, presented, refused):
    reason = access.host_refusal(host, presented, ("sk-good",))
    assert (reason is not None) is refused
    if reason:
        assert "DNS rebinding" in reason and "sk-good" not in reason
