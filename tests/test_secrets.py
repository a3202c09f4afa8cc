"""Credentials never reach the config snapshot: base_url, headers and nested extra_params are checked, values never echoed."""

from __future__ import annotations

import pytest
import yaml
from conftest import QUICKSTART

from agen.config import parse_config
from agen.errors import ConfigError

SECRET = "sk-very-secret-123"


def _raw(**model_fields):
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["models"]["strong"].update(model_fields)
    return raw


def _refused(match: str, **model_fields) -> str:
    with pytest.raises(ConfigError, match=match) as err:
        parse_config(_raw(**model_fields))
    text = str(err.value)
    assert SECRET not in text
    return text


@pytest.mark.parametrize("url", [f"https://user:{SECRET}@api.example.com/v1", f"https://{SECRET}@api.example.com/v1"])
def test_base_url_with_userinfo_is_refused(url):
    """user:key@host (or key@host) in base_url is refused under models.strong, without the key in the message."""
    _refused(r"models\.strong: .*base_url carries credentials", base_url=url)


@pytest.mark.parametrize("param", ["key", "api_key", "apikey", "token", "access_token", "sig", "API-Key"])
def test_base_url_with_a_credential_query_parameter_is_refused(param):
    """?key=…, ?api_key=…, ?sig=… and friends in base_url are refused, naming the parameter, not its value."""
    _refused(rf"models\.strong: .*base_url query parameter '{param}' looks like a credential",
             base_url=f"https://api.example.com/v1?api-version=2024-06-01&{param}={SECRET}")


def test_plain_base_urls_are_accepted():
    """An ordinary URL, with a harmless query parameter, still validates."""
    cfg = parse_config(_raw(base_url="https://api.example.com/v1?api-version=2024-06-01"))
    assert cfg.models["strong"].base_url.endswith("api-version=2024-06-01")


@pytest.mark.parametrize("header", ["Cookie", "x-goog-api-key", "X-Auth-Token", "X-Client-Secret", "Authorization",
                                   "proxy-authorization", "api-key", "OpenAI-Token"])
def test_credential_headers_are_refused_by_name(header):
    """Headers named cookie, x-goog-api-key or containing key/token/secret/auth are refused, naming the header."""
    _refused(rf"models\.strong: .*headers\.{header} would write a credential", headers={header: SECRET})


def test_harmless_headers_are_accepted():
    """anthropic-version, OpenAI-Organization and similar headers are fine."""
    cfg = parse_config(_raw(headers={"anthropic-version": "2023-06-01", "OpenAI-Organization": "org-1"}))
    assert cfg.models["strong"].headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize(("params", "path"), [
    ({"auth": {"token": SECRET}}, "extra_params.auth.token"),
    ({"extra_body": {"provider": {"api_key": SECRET}}}, "extra_params.extra_body.provider.api_key"),
    ({"tools": [{"name": "t"}, {"headers": {"x-api-key": SECRET}}]}, r"extra_params.tools\[1\].headers.x-api-key"),
    ({"metadata": {"client_secret": SECRET}}, "extra_params.metadata.client_secret"),
    ({"api_key": [SECRET]}, "extra_params.api_key"),
])
def test_credentials_nested_in_extra_params_are_refused_with_their_path(params, path):
    """A credential-like name at any depth of extra_params (dicts and lists) is refused with its full path."""
    _refused(rf"models\.strong: .*{path} looks like a credential", extra_params=params)


def test_ordinary_extra_params_are_accepted():
    """max_tokens-like names, prompt_cache_key and a JSON schema with an api_key property are not credentials."""
    params = {"top_k": 20, "thinking": {"budget_tokens": 1024}, "prompt_cache_key": "run-1",
              "response_format": {"json_schema": {"schema": {"properties": {"api_key": {"type": "string"}}}}}}
    assert parse_config(_raw(extra_params=params)).models["strong"].extra_params == params


# ---- secrets by value and by shape (issue 10) ----------------------------------------------------

KEYS = ["sk-proj-" + "A1b2" * 6, "sk-ant-api03-" + "x9Y8" * 6, "sk-" + "Z" * 40, "gsk_" + "q" * 30,
        "xai-" + "k" * 30, "hf_" + "h" * 30, "AKIA" + "ABCDEFGHIJKLMNOP"]


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("where", ["header", "extra_deep", "url_path", "url_query", "model"])
def test_key_shaped_values_are_refused_wherever_they_stand(key, where):
    fields = {"header": {"headers": {"X-Trace": f"run {key}"}},
              "extra_deep": {"extra_params": {"metadata": {"tags": ["a", {"note": key}]}}},
              "url_path": {"base_url": f"https://proxy.example.com/{key}/v1"},
              "url_query": {"base_url": f"https://proxy.example.com/v1?tenant={key}"},
              "model": {"model": key}}[where]
    with pytest.raises(ConfigError, match="looks like an API key") as err:
        parse_config(_raw(**fields))
    assert key not in str(err.value) and "models.strong" in str(err.value)


def test_the_value_of_an_api_key_env_variable_is_refused_anywhere(monkeypatch):
    value = "plain-looking-company-token-0042"
    monkeypatch.setenv("MY_PROVIDER_KEY", value)
    raw = _raw(api_key_env="MY_PROVIDER_KEY", headers={"X-Team": value})
    with pytest.raises(ConfigError, match=r"models\.strong\.headers\.X-Team: holds the value of \$MY_PROVIDER_KEY") as err:
        parse_config(raw)
    assert value not in str(err.value)
    raw = _raw(api_key_env="MY_PROVIDER_KEY", extra_params={"user": {"id": f"u-{value}"}})
    with pytest.raises(ConfigError, match=r"extra_params\.user\.id"):
        parse_config(raw)


@pytest.mark.parametrize("pasted", ["sk-proj-" + "A1b2" * 6, "not a name", "abc-def-123", "a1B2c3D4e5F6g7H8"])
def test_a_key_pasted_as_api_key_env_is_refused_without_echo(pasted):
    with pytest.raises(ConfigError, match="api_key_env must be the NAME of an environment variable") as err:
        parse_config(_raw(api_key_env=pasted))
    assert pasted not in str(err.value)


def test_ordinary_values_pass():
    parse_config(_raw(api_key_env="OPENAI_API_KEY", headers={"X-Title": "task-sk-learn"},
                      extra_params={"user": "sk-short"}))


@pytest.mark.parametrize("value", ["abcd1234efgh5678ijkl", "sk-" + "x" * 30])
def test_a_type_error_does_not_echo_a_key_shaped_or_long_value(value):
    """A key pasted into a number field (max_concurrency) is reported without the value."""
    with pytest.raises(ConfigError, match="max_concurrency") as err:
        parse_config(_raw(max_concurrency=value))
    assert value not in str(err.value)


def test_a_type_error_does_not_echo_the_value_of_an_api_key_env_variable(monkeypatch):
    monkeypatch.setenv("MY_PROVIDER_KEY", "short-key")
    with pytest.raises(ConfigError, match="max_concurrency") as err:
        parse_config(_raw(api_key_env="MY_PROVIDER_KEY", max_concurrency="short-key"))
    assert "short-key" not in str(err.value)
