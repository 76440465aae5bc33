"""The `ampcode:` block: validation, model mapping (exact, regex, suffixes, force mode) and the Amp key sources."""

import json
import logging
import os

import pytest

from cliproxy.addons.core import amp_settings as amp
from cliproxy.addons.core.config import ConfigError, parse

SERVED = {"gpt-5.5", "gpt-6-luna", "gemini-2.5-pro", "test/gpt-5.2"}


def served(name: str) -> bool:
    return name in SERVED


def mapper(*entries) -> amp.ModelMapper:
    return amp.parse({"model-mappings": [dict(e) for e in entries]}).mapper


# -- parsing ----------------------------------------------------------------------------------


def test_default_is_disabled():
    settings = parse(None).ampcode
    assert not settings.enabled and settings.upstream_url == "" and len(settings.mapper) == 0
    assert settings.restrict_management_to_localhost is False and settings.force_model_mappings is False


def test_full_block():
    settings = parse(
        {
            "ampcode": {
                "upstream-url": "  https://ampcode.com/  ",
                "upstream-api-key": " sgamp_cfg ",
                "upstream-api-keys": [
                    {"upstream-api-key": "sgamp_team", "api-keys": ["k1", " ", "k2"]},
                    {"upstream-api-key": "sgamp_other", "api-keys": ["k2", "k3"]},
                ],
                "restrict-management-to-localhost": True,
                "force-model-mappings": True,
                "model-mappings": [
                    {"from": "claude-sonnet-4-5", "to": "gpt-5.5"},
                    {"from": "^claude-.*", "to": "gpt-6-luna", "regex": True},
                ],
            }
        }
    ).ampcode
    assert settings.enabled and settings.upstream_url == "https://ampcode.com"
    assert settings.restrict_management_to_localhost and settings.force_model_mappings
    assert dict(settings.client_keys) == {"k1": "sgamp_team", "k2": "sgamp_team", "k3": "sgamp_other"}  # first entry wins
    assert any("k2" not in w and "earlier entry" in w for w in settings.warnings)
    assert [m.regex for m in settings.mappings] == [False, True]


def test_secrets_stay_out_of_repr_and_errors():
    settings = parse(
        {
            "ampcode": {
                "upstream-api-key": "sgamp_SECRET",
                "upstream-api-keys": [{"upstream-api-key": "sgamp_TEAM", "api-keys": ["sk-CLIENT"]}],
            }
        }
    ).ampcode
    text = repr(settings) + repr(parse({"ampcode": {"upstream-api-key": "sgamp_SECRET"}}))
    assert "SECRET" not in text and "TEAM" not in text and "CLIENT" not in text
    with pytest.raises(ConfigError) as e:
        parse({"ampcode": {"upstream-api-keys": [{"upstream-api-key": "sgamp_X", "api-keys": [12345]}]}})
    assert "12345" not in str(e.value)


@pytest.mark.parametrize(
    "block,needle",
    [
        ("yes", "ampcode: expected a mapping"),
        ({"upstream-url": "ftp://ampcode.com"}, "ampcode.upstream-url: expected an http:// or https:// URL"),
        ({"upstream-url": "https://"}, "ampcode.upstream-url: expected an http:// or https:// URL"),
        ({"upstream-url": "http://x:99999"}, "ampcode.upstream-url: invalid port"),
        ({"upstream-url": 5}, "ampcode.upstream-url: expected a URL string"),
        ({"upstream-api-key": ["a"]}, "ampcode.upstream-api-key: expected a string"),
        ({"upstream-api-keys": {"a": 1}}, "ampcode.upstream-api-keys: expected a list"),
        ({"upstream-api-keys": [{"upstream-api-key": "x", "api-keys": "k"}]}, "ampcode.upstream-api-keys[0].api-keys: expected a list"),
        ({"upstream-api-keys": [{"key": "x"}]}, "ampcode.upstream-api-keys[0]: unknown key(s) key"),
        ({"restrict-management-to-localhost": "yes"}, "ampcode.restrict-management-to-localhost: expected true or false"),
        ({"force-model-mappings": 1}, "ampcode.force-model-mappings: expected true or false"),
        ({"model-mappings": {"from": "a"}}, "ampcode.model-mappings: expected a list"),
        ({"model-mappings": ["a->b"]}, "ampcode.model-mappings[0]: expected a mapping"),
        ({"model-mappings": [{"from": "a", "to": 3}]}, "ampcode.model-mappings[0].to: expected a model id"),
        ({"model-mappings": [{"from": "a", "to": "b", "regex": "yes"}]}, "ampcode.model-mappings[0].regex: expected true or false"),
        (
            {"model-mappings": [{"from": "a", "to": "b"}, {"from": "(", "to": "b", "regex": True}]},
            "ampcode.model-mappings[1].from: invalid regular expression '('",
        ),
        ({"model-mappings": [{"from": "a", "target": "b"}]}, "ampcode.model-mappings[0]: unknown key(s) target"),
    ],
)
def test_errors_name_the_key(block, needle):
    with pytest.raises(ConfigError) as e:
        parse({"ampcode": block})
    assert needle in str(e.value)


def test_blank_entries_are_skipped_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        settings = amp.parse(
            {
                "model-mappings": [{"from": " ", "to": "gpt-5.5"}, {"from": "a", "to": ""}, {"from": "b", "to": "gpt-5.5"}],
                "upstream-api-keys": [{"upstream-api-key": " ", "api-keys": ["k"]}],
                "extra": 1,
            }
        )
    assert [m.source for m in settings.mappings] == ["b"] and settings.client_keys == {}
    assert len(settings.warnings) == 4 and "ampcode.extra: unknown key ignored" in caplog.text


# -- mapping ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "model,base,suffix",
    [
        ("gpt-5.2(xhigh)", "gpt-5.2", "xhigh"),
        ("g25p(8192)", "g25p", "8192"),
        ("g25p()", "g25p", None),
        ("g25p(high", "g25p(high", None),
        ("plain", "plain", None),
        ("(x)", "(x)", None),
    ],
)
def test_split_suffix(model, base, suffix):
    assert amp.split_suffix(model) == (base, suffix)


def test_exact_is_case_insensitive_and_last_duplicate_wins():
    m = mapper({"from": "Claude-Sonnet-4-5", "to": "gpt-6-luna"}, {"from": "claude-sonnet-4-5", "to": "gpt-5.5"})
    assert m.map("CLAUDE-SONNET-4-5", served) == "gpt-5.5"
    assert m.map("claude-opus-4-6", served) is None


def test_exact_beats_regex_whatever_the_order():
    m = mapper({"from": "^claude-", "to": "gpt-6-luna", "regex": True}, {"from": "claude-opus-4-6", "to": "gpt-5.5"})
    assert m.map("claude-opus-4-6", served) == "gpt-5.5"
    assert m.map("claude-haiku-4-5", served) == "gpt-6-luna"


def test_regex_file_order_unanchored_case_insensitive_no_fall_through():
    m = mapper({"from": "OPUS", "to": "not-served", "regex": True}, {"from": "claude", "to": "gpt-5.5", "regex": True})
    assert m.map("claude-sonnet-4-5", served) == "gpt-5.5"  # unanchored search
    assert m.map("claude-opus-4-6", served) is None  # first match decides, its target is not served
    assert mapper({"from": "^sonnet$", "to": "gpt-5.5", "regex": True}).map("claude-sonnet", served) is None


@pytest.mark.parametrize(
    "requested,target,expected",
    [
        ("g25p(8192)", "gemini-2.5-pro", "gemini-2.5-pro(8192)"),
        ("g25p(high)", "gemini-2.5-pro", "gemini-2.5-pro(high)"),
        ("g25p(auto)", "gemini-2.5-pro", "gemini-2.5-pro(auto)"),
        ("g25p(none)", "gemini-2.5-pro", "gemini-2.5-pro(none)"),
        ("g25p(high)", "gemini-2.5-pro(medium)", "gemini-2.5-pro(medium)"),  # the target's suffix wins
        ("g25p()", "gemini-2.5-pro", "gemini-2.5-pro"),  # an empty suffix is none
        ("g25p", "gemini-2.5-pro(low)", "gemini-2.5-pro(low)"),
        ("gpt-5.2(xhigh)", "test/gpt-5.2", "test/gpt-5.2(xhigh)"),
    ],
)
def test_thinking_suffix(requested, target, expected):
    assert mapper({"from": amp.split_suffix(requested)[0], "to": target}).map(requested, served) == expected


def test_unclosed_suffix_is_a_plain_name():
    assert mapper({"from": "g25p", "to": "gemini-2.5-pro"}).map("g25p(high", served) is None
    assert mapper({"from": "g25p(high", "to": "gemini-2.5-pro"}).map("g25p(high", served) == "gemini-2.5-pro"


def test_decide_default_and_force_mode():
    m = mapper({"from": "gpt-5.5", "to": "gpt-6-luna"}, {"from": "claude-x", "to": "gpt-5.5"}, {"from": "dead", "to": "nowhere"})
    assert amp.decide("gpt-5.5(high)", m, served, force=False) == amp.Decision("local", "gpt-5.5(high)")
    assert amp.decide("gpt-5.5(high)", m, served, force=True) == amp.Decision("mapped", "gpt-6-luna(high)")
    assert amp.decide("claude-x", m, served, force=False) == amp.Decision("mapped", "gpt-5.5")
    assert amp.decide("claude-x", m, served, force=True) == amp.Decision("mapped", "gpt-5.5")
    assert amp.decide("dead", m, served, force=True) == amp.Decision("upstream", "dead")
    assert amp.decide("claude-y", m, served, force=False) == amp.Decision("upstream", "claude-y")
    # force mode with a mapping whose target is not served falls back to the model's own local provider
    m2 = mapper({"from": "gpt-5.5", "to": "nowhere"})
    assert amp.decide("gpt-5.5", m2, served, force=True) == amp.Decision("local", "gpt-5.5")


# -- secrets ------------------------------------------------------------------------------------


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.delenv("AMP_API_KEY", raising=False)
    return tmp_path


def write_secrets(home, data):
    path = home / amp.SECRETS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return path


def source(home, configured="", ttl=amp.SECRETS_FILE_TTL):
    return amp.SecretSource(configured, ttl=ttl, home=lambda: home)


def test_precedence_config_env_file(home, monkeypatch):
    write_secrets(home, {amp.SECRETS_FILE_KEY: " sgamp_file ", "apiKey@http://localhost:8317": "other"})
    assert source(home).key() == "sgamp_file"
    monkeypatch.setenv("AMP_API_KEY", " sgamp_env ")
    assert source(home).key() == "sgamp_env"
    assert source(home, " sgamp_cfg ").key() == "sgamp_cfg"
    assert source(home, "   ").key() == "sgamp_env"  # blank falls through
    monkeypatch.setenv("AMP_API_KEY", "  ")
    assert source(home).key() == "sgamp_file"


def test_env_is_read_on_every_call(home, monkeypatch):
    s = source(home)
    assert s.key() == ""
    monkeypatch.setenv("AMP_API_KEY", "sgamp_late")
    assert s.key() == "sgamp_late" and s.source() == "AMP_API_KEY"


def test_file_is_cached_but_a_changed_file_is_seen(home, monkeypatch):
    s = source(home)
    assert s.key() == "" and s.source() == "none"  # missing file: no key, no error
    path = write_secrets(home, {amp.SECRETS_FILE_KEY: "sgamp_one"})
    assert s.key() == "sgamp_one"
    reads = []
    original = amp.SecretSource._read
    monkeypatch.setattr(amp.SecretSource, "_read", staticmethod(lambda p: reads.append(p) or original(p)))
    for _ in range(5):
        assert s.key() == "sgamp_one"
    assert reads == []  # cached
    path.write_text(json.dumps({amp.SECRETS_FILE_KEY: "sgamp_two__"}))
    os.utime(path, ns=(1, 1))
    assert s.key() == "sgamp_two__" and len(reads) == 1


def test_file_cache_expires(home, monkeypatch):
    write_secrets(home, {amp.SECRETS_FILE_KEY: "sgamp_a"})
    s = source(home, ttl=0)
    assert s.key() == "sgamp_a"
    calls = []
    monkeypatch.setattr(amp.SecretSource, "_read", staticmethod(lambda p: calls.append(p) or "sgamp_b"))
    assert s.key() == "sgamp_b" and calls


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", json.dumps({amp.SECRETS_FILE_KEY: 5}), json.dumps({"apiKey@http://x/": "k"})])
def test_bad_or_keyless_file_gives_no_key(home, content, caplog):
    write_secrets(home, content)
    assert source(home).key() == ""
    assert "sgamp" not in caplog.text


def test_per_client_mapping_beats_default(home, monkeypatch):
    monkeypatch.setenv("AMP_API_KEY", "sgamp_env")
    settings = amp.parse({"upstream-api-keys": [{"upstream-api-key": "sgamp_team", "api-keys": ["sk-alice"]}]})
    assert settings.amp_key("sk-alice") == "sgamp_team"
    assert settings.amp_key("sk-bob") == "sgamp_env"
    assert settings.amp_key(None) == "sgamp_env"
