"""The live catalog in the runtime, against the fake backend on 127.0.0.1: per-account reads, ETags,
routing by account, the fallback chain (disk, built-in) and every way a read can fail."""

import json
import logging

import pytest

from cliproxy.addons.core import config as configfile
from cliproxy.addons.core import live_catalog
from cliproxy.addons.core.runtime import Runtime
from tests.fakes.accounts import mint_account
from tests.fakes.codex_backend import CodexBackend, model_entry


@pytest.fixture(scope="module")
def fake():
    with CodexBackend() as backend:
        yield backend


@pytest.fixture
def backend(fake):
    fake.catalog.reset()
    fake.catalog.plans.update({"acct-go": "go", "acct-plus": "plus"})
    return fake


def runtime_for(backend, auth, **extra) -> Runtime:
    rt = Runtime()
    rt.apply_config(
        configfile.parse({"auth-dir": str(auth), "codex-base-url": backend.base_url, "oauth-issuer": "http://127.0.0.1:9", **extra})
    )
    return rt


async def read_all(rt: Runtime) -> None:
    for member in rt.catalog.due(now=float("inf")):
        await rt.catalog.refresh(member)


def two_accounts(tmp_path):
    mint_account(tmp_path, "go@example.com", "acct-go", plan="go", name="go.json")
    mint_account(tmp_path, "plus@example.com", "acct-plus", name="plus.json")
    return tmp_path


async def test_each_account_gets_its_own_list_and_models_go_only_where_listed(backend, tmp_path):
    rt = runtime_for(backend, two_accounts(tmp_path))
    assert rt.catalog.merged.source == "built-in" and all(m.models is None for m in rt.pool.members)
    await read_all(rt)
    try:
        assert rt.catalog.merged.source == "upstream"
        go, plus = rt.pool.get("go.json"), rt.pool.get("plus.json")
        assert "gpt-6-astra" not in go.models and "gpt-6-astra" in plus.models and "gpt-5.5" in go.models
        for _ in range(4):  # round-robin would alternate: only plus lists astra
            assert (await rt.credential("gpt-6-astra")).member.key == "plus.json"
        assert {(await rt.credential("gpt-5.5")).member.key for _ in range(4)} == {"go.json", "plus.json"}
        got = backend.catalog.requests[-1]
        assert got.path.endswith("/models?client_version=0.169.0") and got.headers["version"] == "0.169.0"
        assert got.headers["originator"] == "codex_cli_rs" and got.headers["authorization"].startswith("Bearer ")
        assert {r.headers["chatgpt-account-id"] for r in backend.catalog.requests} == {"acct-go", "acct-plus"}
        assert rt.catalog.model_error("gpt-6-astra") is None
        rt.pool.replace([m for m in rt.pool.members if m.key == "go.json"])
        err = rt.catalog.model_error("gpt-6-astra")
        assert err.status == 404 and err.code == "model_not_found" and err.param == "model"
        assert "no account in the pool may use model 'gpt-6-astra'" in err.message and "gpt-6.1-sol" in err.message
        err = rt.catalog.model_error("gpt-4o")
        assert "'gpt-4o' is not in cliproxy's catalog; available: gpt-6.1-sol, gpt-6-sol" in err.message
    finally:
        await rt.close()


async def test_etag_makes_the_next_read_a_304_and_a_moved_etag_reads_again(backend, tmp_path):
    mint_account(tmp_path, "plus@example.com", "acct-plus", name="plus.json")
    rt = runtime_for(backend, tmp_path, **{"models-refresh-seconds": 3600})
    try:
        await read_all(rt)
        assert rt.catalog.due() == []  # not before the interval
        member = rt.pool.get("plus.json")
        assert await rt.catalog.refresh(member) is False
        assert backend.catalog.requests[-1].headers["if-none-match"] == backend.catalog.etag("acct-plus", "0.169.0")
        rt.catalog.etag_seen("plus.json", backend.catalog.etag("acct-plus", "0.169.0"))
        assert rt.catalog.due() == []  # same catalog: nothing to do
        backend.catalog.models.append(model_entry("gpt-7-nova", priority=0))
        rt.catalog.etag_seen("plus.json", backend.catalog.etag("acct-plus"))
        assert [m.key for m in rt.catalog.due()] == ["plus.json"]
        assert await rt.catalog.refresh(member) is True
        assert "gpt-7-nova" in rt.config.settings.catalog.models and "gpt-7-nova" in member.models
    finally:
        await rt.close()


@pytest.mark.parametrize(
    "fail,logged",
    [
        ("401", "answered 401"),
        ("500", "answered 500"),
        ("html", "not a catalog (not JSON; text/html)"),
        ("garbage", 'not a {"models": [...]} object'),
        ("hang", "no answer within 0.3s"),
    ],
)
async def test_a_failed_read_keeps_the_last_good_list_and_says_so_once(backend, tmp_path, monkeypatch, caplog, fail, logged):
    monkeypatch.setattr(live_catalog, "FETCH_TIMEOUT", 0.3)
    mint_account(tmp_path, "plus@example.com", "acct-plus", name="plus.json")
    rt = runtime_for(backend, tmp_path, **{"models-refresh-seconds": 1})
    member = rt.pool.get("plus.json")
    try:
        backend.catalog.fail = fail  # first read fails: built-in
        with caplog.at_level(logging.WARNING):
            assert await rt.catalog.refresh(member) is False
            assert await rt.catalog.refresh(member) is False
        lines = [r.getMessage() for r in caplog.records if "model catalog of" in r.getMessage()]
        assert len(lines) == 1 and logged in lines[0] and "keeping the saved or built-in list" in lines[0], lines
        assert rt.catalog.merged.source == "built-in" and member.models is None
        backend.catalog.fail = None
        await rt.catalog.refresh(member)
        assert rt.catalog.merged.source == "upstream"
        backend.catalog.models.pop(0)
        backend.catalog.fail = fail  # later reads fail: the last good list stays
        assert await rt.catalog.refresh(member) is False
        assert "gpt-6.1-sol" in member.models and rt.catalog.merged.source == "upstream"
        token = json.loads((tmp_path / "plus.json").read_text())["access_token"]
        assert token not in caplog.text
    finally:
        await rt.close()


async def test_unreachable_backend_and_no_account_are_not_errors(backend, tmp_path, caplog):
    mint_account(tmp_path, "plus@example.com", "acct-plus", name="plus.json")
    rt = Runtime()
    rt.apply_config(
        configfile.parse(
            {"auth-dir": str(tmp_path), "codex-base-url": "http://127.0.0.1:9/backend-api/codex", "oauth-issuer": "http://127.0.0.1:9"}
        )
    )
    try:
        with caplog.at_level(logging.WARNING):
            assert await rt.catalog.refresh(rt.pool.get("plus.json")) is False
        assert "backend unreachable (ConnectError)" in caplog.text and rt.catalog.merged.source == "built-in"
    finally:
        await rt.close()
    empty = runtime_for(backend, tmp_path / "none")
    assert empty.catalog.due() == [] and empty.catalog.model_error("gpt-6.1-sol") is None  # no account: 503 later, not 404
    assert empty.catalog.model_error("gpt-4o").status == 404


async def test_malformed_entries_are_skipped_one_line_each(backend, tmp_path, caplog):
    mint_account(tmp_path, "plus@example.com", "acct-plus", name="plus.json")
    backend.catalog.models[1:1] = [{"slug": "gpt-bad", "visibility": 3}, {"display_name": "no slug"}]
    rt = runtime_for(backend, tmp_path)
    try:
        with caplog.at_level(logging.WARNING):
            await read_all(rt)
        lines = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        assert len(lines) == 2 and "'gpt-bad'" in lines[0]
        assert "gpt-bad" not in rt.config.settings.catalog.models and "gpt-6-astra" in rt.config.settings.catalog.models
    finally:
        await rt.close()


async def test_the_last_good_list_survives_a_restart_on_disk(backend, tmp_path):
    two_accounts(tmp_path)
    backend.catalog.models.append(model_entry("gpt-7-nova"))
    rt = runtime_for(backend, tmp_path)
    try:
        await read_all(rt)
    finally:
        await rt.close()
    saved = tmp_path / ".cliproxy-state" / "models-catalog.json"
    assert saved.stat().st_mode & 0o777 == 0o600 and "access_token" not in saved.read_text()
    backend.catalog.fail = "500"
    again = runtime_for(backend, tmp_path)  # a new run while the backend fails
    try:
        assert again.catalog.merged.source == "disk" and "gpt-7-nova" in again.config.settings.catalog.models
        assert "gpt-6-astra" not in again.pool.get("go.json").models  # per-account lists are saved too
        await read_all(again)
        assert again.catalog.merged.source == "disk"
        backend.catalog.fail = None
        await read_all(again)  # the saved ETag is sent; the backend confirms it with a 304
        assert backend.catalog.requests[-1].headers.get("if-none-match")
    finally:
        await again.close()
    saved.write_text("{not json")
    broken = runtime_for(backend, tmp_path)
    assert broken.catalog.merged.source == "built-in"


async def test_config_models_are_laid_over_and_survive_a_read(backend, tmp_path):
    mint_account(tmp_path, "plus@example.com", "acct-plus", name="plus.json")
    rt = runtime_for(
        backend, tmp_path, models=[{"id": "gpt-6.2-sol", "levels": ["low", "high"]}], **{"model-aliases": {"fast": "gpt-6-luna"}}
    )
    try:
        await read_all(rt)
        catalog = rt.config.settings.catalog
        assert catalog.info("gpt-6.2-sol").source == "config" and catalog.resolve("fast").model == "gpt-6-luna"
        assert "gpt-6.2-sol" in rt.pool.get("plus.json").models
        assert rt.catalog.usable()[:2] == ["gpt-6.1-sol", "gpt-6-astra"] and "codex-auto-review" not in rt.catalog.usable()
    finally:
        await rt.close()


def cli_models(*argv: str) -> tuple[int, str]:
    from rich.console import Console

    from cliproxy.scripts import cli

    console = Console(record=True, width=200, force_terminal=False, color_system=None)
    code = cli.main(["models", *argv], console=console)
    return code, console.export_text()


def test_cliproxy_models_prints_the_merged_catalog(backend, tmp_path):
    auth = two_accounts(tmp_path / "auth")
    config = tmp_path / "config.yaml"
    config.write_text(
        json.dumps(
            {
                "auth-dir": str(auth),
                "codex-base-url": backend.base_url,
                "oauth-issuer": "http://127.0.0.1:9",
                "models": [{"id": "gpt-6.2-sol", "levels": ["low", "high"]}],
            }
        )
    )
    code, out = cli_models("--config", str(config))
    assert code == 0
    lines = {line.strip("│ ").split()[0]: line.strip("│ ") for line in out.splitlines() if line.strip("│ ").startswith(("gpt", "codex"))}
    assert [c.strip() for c in lines["gpt-6-astra"].split("│")][-2:] == ["plus@example.com", "upstream"]
    assert list(lines)[:3] == ["gpt-6.1-sol", "gpt-6-astra", "gpt-6-sol"]  # the backend's order of priority
    assert "low, medium, high, xhigh, max, ultra" in lines["gpt-6.1-sol"] and " all " in lines["gpt-6.1-sol"]
    assert "500k" in lines["gpt-6.1-terra"] and " classic " in lines["gpt-5.5"] and " lite " in lines["gpt-6-luna"]
    assert "(hidden)" in lines["codex-auto-review"] and lines["gpt-6.2-sol"].split()[-1] == "config"
    assert "token" not in out.lower()
    code, out = cli_models("--config", str(config), "--json", "--offline")  # what the read above saved
    rows = {r["model"]: r for r in json.loads(out)}
    assert rows["gpt-6-astra"]["accounts"] == ["plus@example.com"] and rows["gpt-6-astra"]["source"] == "disk"
    assert rows["gpt-5.5"]["form"] == "classic" and rows["gpt-6.2-sol"]["all_accounts"] is True
    empty = tmp_path / "empty.yaml"
    empty.write_text(json.dumps({"auth-dir": str(tmp_path / "none"), "codex-base-url": backend.base_url}))
    code, out = cli_models("--config", str(empty), "--json")
    rows = json.loads(out)
    assert code == 0 and {r["source"] for r in rows} == {"built-in"} and rows[0]["model"] == "gpt-6.1-sol"
