"""The live catalog's pure parts: reading `/models` entries, merging accounts and config, the disk snapshot, clamping."""

import json

import pytest

from cliproxy.addons.core import config as configfile
from cliproxy.addons.hooks.notes import comment
from cliproxy.addons.translate import catalog as cat
from cliproxy.addons.translate import codex_body
from cliproxy.addons.translate.models import DEFAULT_MODEL, DEFAULT_MODELS, Catalog, ModelInfo
from tests.fakes.codex_backend import cli_catalog, model_entry

ENTRY = model_entry("gpt-6-sol", "GPT-6-Sol", tier="priority", min_version="0.155.0")


def test_an_entry_reads_into_model_info():
    info = cat.parse_entry(ENTRY)
    assert (info.id, info.display_name, info.context_window, info.listed, info.lite) == ("gpt-6-sol", "GPT-6-Sol", 272_000, True, True)
    assert info.levels == ("low", "medium", "high", "xhigh", "max", "ultra")
    assert (info.min_client_version, info.service_tier, info.input_modalities, info.source) == (
        "0.155.0",
        "priority",
        ("text", "image"),
        "upstream",
    )
    assert info.raw is ENTRY
    classic = cat.parse_entry(model_entry("gpt-5.5", levels=("low", "medium", "high", "xhigh"), lite=False, visibility="hide"))
    assert (classic.lite, classic.listed, classic.levels[-1]) == (False, False, "xhigh")
    # a version as the Rust client spells it, levels as bare names and out of order, an effort newer than cliproxy
    odd = cat.parse_entry({"slug": "m", "supported_reasoning_levels": ["high", "low", "hyper"], "minimal_client_version": [0, 170, 1]})
    assert (odd.levels, odd.min_client_version, odd.display_name, odd.context_window) == (("low", "high"), "0.170.1", "m", 272_000)


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"slug": None}, "slug"),
        ({"slug": "bad name with spaces"}, "slug"),
        ({"slug": "x" * 200}, "slug"),
        ({"supported_reasoning_levels": "high"}, "supported_reasoning_levels"),
        ({"supported_reasoning_levels": [{"description": "no effort"}]}, "effort"),
        ({"visibility": "sometimes"}, "visibility"),
        ({"context_window": "big"}, "context_window"),
        ({"context_window": -1}, "context_window"),
        ({"context_window": True}, "context_window"),
        ({"use_responses_lite": "yes"}, "use_responses_lite"),
        ({"minimal_client_version": "soon"}, "minimal_client_version"),
        ({"default_service_tier": 3}, "default_service_tier"),
        ({"input_modalities": "text"}, "input_modalities"),
    ],
)
def test_a_malformed_entry_is_refused_with_its_reason(change, reason):
    with pytest.raises(ValueError, match=reason):
        cat.parse_entry({**ENTRY, **change})


def test_a_malformed_entry_is_skipped_with_one_line_and_the_rest_kept():
    models, problems = cat.parse_models({"models": [ENTRY, {**ENTRY, "slug": "gpt-x", "visibility": 7}, "junk", ENTRY, cli_catalog()[0]]})
    assert [m.id for m in models] == ["gpt-6-sol", "gpt-6.1-sol"]
    assert len(problems) == 3
    assert "entry 1 ('gpt-x') skipped: visibility" in problems[0] and "entry 2 skipped: not an object" in problems[1]
    assert "listed twice" in problems[2]


@pytest.mark.parametrize(
    "body",
    [b"<html><body>Just a moment...</body></html>", b"", b'{"models": "yes"}', b"[1, 2]", b'{"detail": "Unauthorized"}', b"[" * 100_000],
)
def test_an_answer_that_is_not_a_catalog_is_refused_whole(body):
    with pytest.raises(cat.CatalogError):
        cat.parse_body(body)


@pytest.mark.parametrize(
    "value,expected",
    [
        ("0.169.0", (0, 169, 0)),
        ([0, 153, 0], (0, 153, 0)),
        (" 1.2 ", (1, 2)),
        ("v1", None),
        ([0, -1], None),
        ([], None),
        (True, None),
        (None, None),
    ],
)
def test_version_tuple(value, expected):
    assert cat.version_tuple(value) == expected


def entries(*slugs: str, source: str = "upstream") -> list[ModelInfo]:
    return [cat.parse_entry(model_entry(s), source) for s in slugs]


def test_merge_unions_the_accounts_and_keeps_each_accounts_models():
    merged = cat.merge({"plus.json": entries("gpt-6.1-sol", "gpt-6-astra"), "go.json": entries("gpt-6.1-sol", "gpt-5.5"), "new.json": []})
    assert list(merged.catalog.models) == ["gpt-6.1-sol", "gpt-6-astra", "gpt-5.5"] and merged.source == "upstream"
    assert merged.served == {"plus.json": {"gpt-6.1-sol", "gpt-6-astra"}, "go.json": {"gpt-6.1-sol", "gpt-5.5"}, "new.json": None}


def test_merge_lays_the_config_over_upstream():
    own = (ModelInfo("gpt-6.2-sol", ("low", "high")), ModelInfo("gpt-5.5", ("low",), 1000))
    merged = cat.merge({"a": entries("gpt-6.1-sol", "gpt-5.5"), "b": entries("gpt-6.1-sol")}, own, {"fast": "gpt-6-luna"})
    assert merged.catalog.info("gpt-6.2-sol").source == "config" and merged.catalog.info("gpt-5.5").levels == ("low",)
    assert merged.catalog.info("gpt-5.5").raw is not None  # the Codex shape still carries the backend's own entry
    # a model the user vouches for goes to every account; redescribing one does not widen who may serve it
    assert merged.served == {"a": {"gpt-6.1-sol", "gpt-5.5", "gpt-6.2-sol"}, "b": {"gpt-6.1-sol", "gpt-6.2-sol"}}
    assert merged.catalog.aliases == {"fast": "gpt-6-luna"}


def test_merge_falls_back_to_disk_then_built_in():
    disk = cat.merge({"a": entries("gpt-6.1-sol", source="disk")})
    assert disk.source == "disk" and list(disk.catalog.models) == ["gpt-6.1-sol"]
    built_in = cat.merge({"a": [], "b": []}, (ModelInfo("gpt-9"),))
    assert built_in.source == "built-in" and built_in.served == {"a": None, "b": None}
    assert list(built_in.catalog.models) == [m.id for m in DEFAULT_MODELS] + ["gpt-9"]
    assert cat.merge({}).catalog.info(DEFAULT_MODEL).lite


def test_built_in_catalog_is_the_cli_0_169_catalog():
    c = Catalog.default()
    assert DEFAULT_MODEL == "gpt-6.1-sol" and {"gpt-5.4", "gpt-5.4-mini", "gpt-5.3-codex-spark"}.isdisjoint(c.models)
    assert [m.id for m in c.listed()] == [
        "gpt-6.1-sol",
        "gpt-6-astra",
        "gpt-6-sol",
        "gpt-6-luna",
        "gpt-5.6-sol",
        "gpt-6.1-terra",
        "gpt-5.6-terra",
        "gpt-5.6-luna",
        "gpt-5.5",
    ]
    assert [m.id for m in c.models.values() if not m.lite] == ["gpt-5.5"] and not c.info("codex-auto-review").listed
    assert c.info("gpt-6.1-terra").context_window == 500_000
    assert {m.id: m.levels[-1] for m in c.models.values()} == {
        "gpt-6.1-sol": "ultra",
        "gpt-6-astra": "ultra",
        "gpt-6-sol": "ultra",
        "gpt-6-luna": "max",
        "gpt-5.6-sol": "ultra",
        "gpt-6.1-terra": "ultra",
        "gpt-5.6-terra": "ultra",
        "gpt-5.6-luna": "max",
        "gpt-5.5": "xhigh",
        "codex-auto-review": "max",
    }
    # the fake backend was written from the CLI's own catalog: the two must agree
    assert [(m.id, m.levels, m.context_window, m.lite, m.listed) for m in c.models.values()] == [
        (m.id, m.levels, m.context_window, m.lite, m.listed) for m in (cat.parse_entry(e) for e in cli_catalog())
    ]


def test_codex_listing_carries_backend_entries_for_the_clients_version():
    merged = cat.merge({"a": [cat.parse_entry(e) for e in cli_catalog()]}, (ModelInfo("gpt-9"),))
    listing = cat.codex_listing(merged.catalog, "0.169.0")
    slugs = [m["slug"] for m in listing["models"]]
    assert "gpt-9" not in slugs and "codex-auto-review" in slugs and listing["models"][0] == cli_catalog()[0]
    old = [m["slug"] for m in cat.codex_listing(merged.catalog, "0.150.0")["models"]]
    assert old == ["gpt-5.6-sol", "gpt-5.6-terra", "gpt-5.6-luna", "gpt-5.5", "codex-auto-review"]
    assert [m["slug"] for m in cat.codex_listing(merged.catalog, None, {"gpt-5.5"})["models"]] == ["gpt-5.5"]
    assert cat.codex_listing(Catalog.default(), "0.169.0") == {"models": []}  # built-in entries: the CLI keeps its own


def test_snapshot_round_trip_and_garbage():
    snaps = {"a.json": cat.Snapshot('W/"1"', 1700.0, (ENTRY,))}
    text = json.dumps(cat.dump_snapshots(snaps, "0.169.0"))
    back = cat.load_snapshots(text)
    assert back == {"a.json": cat.Snapshot('W/"1"', 1700.0, (ENTRY,), "0.169.0")}
    for bad in ("", "{", "[]", '{"version": 99, "accounts": {}}', '{"version": 1}'):
        with pytest.raises(cat.CatalogError):
            cat.load_snapshots(bad)
    assert cat.load_snapshots('{"version": 1, "accounts": {"a": 5, "b": {"models": [1, {"slug": "x"}]}}}') == {
        "b": cat.Snapshot(None, 0.0, ({"slug": "x"},), None)
    }


@pytest.mark.parametrize(
    "model,effort,default,expected,clamped",
    [
        ("gpt-6.1-sol", "ultra", "medium", "ultra", None),
        ("gpt-6-luna", "ultra", "medium", "max", "ultra"),
        ("gpt-5.5", "max", "medium", "xhigh", "max"),
        ("gpt-5.5", "minimal", "medium", "low", "minimal"),
        ("gpt-5.5", None, "max", "xhigh", "max"),  # the configured default is fitted too
        ("gpt-5.5", "auto", "medium", "medium", None),
        ("gpt-5.5(ultra)", None, "medium", "xhigh", "ultra"),
    ],
)
def test_clamping_is_reported(model, effort, default, expected, clamped):
    settings = configfile.parse({"reasoning": {"default-effort": default}}).settings
    got = codex_body.resolve_model(settings, model, effort)
    assert (got.effort, got.clamped_from) == (expected, clamped)


def test_comment_says_when_the_effort_was_clamped():
    st = {"route": "chat", "model": "gpt-5.5", "effort": "xhigh", "effort_clamped": "ultra"}
    assert comment(st) == "chat · gpt-5.5 · xhigh (asked ultra, clamped to the model's levels)"
    assert comment({"route": "chat", "model": "gpt-5.5", "effort": "xhigh"}) == "chat · gpt-5.5 · xhigh"


def test_config_keys_for_the_live_catalog():
    cfg = configfile.parse({"codex-client-version": "0.170.1", "models-refresh-seconds": 5, "models": [{"id": "gpt-9", "lite": True}]})
    assert (cfg.codex_client_version, cfg.models_refresh) == ("0.170.1", 5)
    assert [(m.id, m.lite, m.source) for m in cfg.models] == [("gpt-9", True, "config")]
    default = configfile.parse({})
    assert (default.codex_client_version, default.models_refresh, default.models) == ("0.169.0", 10800, ())
    for bad in (
        {"codex-client-version": "latest"},
        {"codex-client-version": True},
        {"models-refresh-seconds": 0},
        {"models-refresh-seconds": "3h"},
        {"models": [{"id": "x", "lite": "yes"}]},
    ):
        with pytest.raises(configfile.ConfigError):
            configfile.parse(bad)
