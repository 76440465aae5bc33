"""Config parsing: defaults, validation messages that name the key, and what each key does."""

import pytest

from cliproxy.addons.core.config import ConfigError, load, parse


def test_defaults():
    cfg = parse(None)
    assert cfg.codex_base_url == "https://chatgpt.com/backend-api/codex"
    assert cfg.responses_url == "https://chatgpt.com/backend-api/codex/responses"
    assert cfg.strategy == "round-robin" and cfg.api_keys == () and str(cfg.auth_dir).endswith(".cli-proxy-api")


@pytest.mark.parametrize(
    "data,needle",
    [
        ({"routing": {"strategy": "random"}}, "routing.strategy: expected one of round-robin, fill-first, got 'random'"),
        ({"api-keys": "abc"}, "api-keys: expected a list of strings"),
        ({"api-keys": ["ok", 3]}, "api-keys[1]: expected a string"),
        ({"codex-base-url": "ftp://x"}, "codex-base-url: expected an http:// or https:// URL"),
        ({"codex-api-key": [{"base-url": "https://x"}]}, "codex-api-key[0].api-key: expected a non-empty string"),
        ({"reasoning": {"chat-display": "loud"}}, "reasoning.chat-display: expected one of"),
        ({"models": [{"id": "m", "levels": ["warp"]}]}, "models[0].levels: expected one of"),
        ({"request-timeout-seconds": "soon"}, "request-timeout-seconds: expected a whole number"),
        ({"responses-retention-hours": -1}, "responses-retention-hours: expected a number of hours (0 or more), got -1"),
        ({"responses-retention-hours": True}, "responses-retention-hours: expected a number of hours, got bool"),
        ({"responses-max-mb": "lots"}, "responses-max-mb: expected a number of megabytes"),
        ([1, 2], "config: expected a mapping"),
    ],
)
def test_errors_name_the_key(data, needle):
    with pytest.raises(ConfigError) as e:
        parse(data)
    assert needle in str(e.value)


def test_response_store_limits():
    assert (parse(None).responses_retention_hours, parse(None).responses_max_mb) == (24, 256)
    cfg = parse({"responses-retention-hours": 0.5, "responses-max-mb": 16})
    assert (cfg.responses_retention_hours, cfg.responses_max_mb, cfg.warnings) == (0.5, 16, ())


def test_unknown_keys_warn_but_load():
    assert parse({"auth-dir": "/tmp/x", "debug": True}).warnings == ("unknown key 'debug' ignored",)


def test_yaml_errors_give_the_line(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("auth-dir: /tmp\nrouting: [unclosed\n")
    with pytest.raises(ConfigError) as e:
        load(p)
    assert "not valid YAML" in str(e.value) and "line" in str(e.value)


def test_aliases_models_and_api_key_entries():
    cfg = parse(
        {
            "model-aliases": {"Fast": "gpt-6-luna"},
            "models": ["gpt-9", {"id": "gpt-8", "levels": ["low", "max"]}],
            "codex-api-key": [{"key": "sk-1", "base-url": "https://api.openai.com/v1/", "models": [{"name": "gpt-5.5", "alias": "g"}]}],
        }
    )
    cat = cfg.settings.catalog
    assert cat.resolve("fast").model == "gpt-6-luna" and cat.info("gpt-9") and cat.info("gpt-8").levels == ("low", "max")
    up = cfg.api_key_upstreams[0]
    assert up.api_key == "sk-1" and up.base_url == "https://api.openai.com/v1" and up.models == (("gpt-5.5", "g"),)
    assert "sk-1" not in repr(cfg)
