"""Config validation: every mistake is named with its path and a fix, before anything runs."""

from pathlib import Path

import pytest
import yaml

from agen.config import changed_output_fields, load_config, parse_config
from agen.errors import ConfigError

QUICKSTART = Path(__file__).resolve().parent.parent / "configs" / "quickstart.yaml"


def _raw() -> dict:
    return yaml.safe_load(QUICKSTART.read_text())


def test_shipped_configs_validate():
    """Every YAML run config shipped in configs/ is valid."""
    for path in QUICKSTART.parent.glob("*.yaml"):
        if path.name in ("prices.yaml", "sim_models.yaml"):
            continue
        load_config(path)


def test_unknown_key_names_path_and_suggestion():
    """A misspelt key is reported with its dotted path and the closest valid key."""
    raw = _raw()
    raw["vote"]["kk"] = 3
    raw["models"]["strong"]["max_concurency"] = 3
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "q.yaml")
    msg = str(err.value)
    assert "q.yaml: vote.kk: unknown key; did you mean 'k'?" in msg
    assert "models.strong.max_concurency: unknown key; did you mean 'max_concurrency'?" in msg


def test_bad_value_and_unknown_model_reference():
    """A value out of range and a stage naming an undefined model are both reported."""
    raw = _raw()
    raw["vote"]["k"] = 0
    with pytest.raises(ConfigError, match=r"vote\.k: .*greater than or equal to 1"):
        parse_config(raw)
    raw = _raw()
    raw["amplify"]["model"] = "nope"
    with pytest.raises(ConfigError, match="amplify.model: no model named 'nope'; models defined: cheap, strong"):
        parse_config(raw)


def test_sim_base_url_needs_simulator_section():
    """base_url: sim without a simulator section is an error, not a silent network call."""
    raw = _raw()
    del raw["simulator"]
    with pytest.raises(ConfigError, match="simulator"):
        parse_config(raw)


def test_missing_file_and_bad_yaml(tmp_path):
    """A missing file and a YAML syntax error are ConfigErrors naming the file."""
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_output_defining_fields_vs_resumable_ones():
    """Concurrency, limits and targets may change on resume; k and the seed may not."""
    a = parse_config(_raw())
    raw = _raw()
    raw["models"]["cheap"]["max_concurrency"] = 7
    raw["amplify"]["target"] = 9999
    raw["budget"] = {"usd": 1.0}
    assert changed_output_fields(a, parse_config(raw)) == []
    assert a.fingerprint() == parse_config(raw).fingerprint()
    raw["vote"]["k"] = 8
    raw["seed"] = 3
    assert changed_output_fields(a, parse_config(raw)) == ["seed", "vote.k"]


def test_credentials_in_headers_are_refused():
    """A key pasted into headers or extra_params is refused: configs are snapshotted to disk."""
    raw = _raw()
    raw["models"]["strong"]["headers"] = {"Authorization": "Bearer sk-abc"}
    with pytest.raises(ConfigError, match="models.strong: .*api_key_env") as err:
        parse_config(raw)
    assert "sk-abc" not in str(err.value)
    raw = _raw()
    raw["models"]["cheap"]["extra_params"] = {"api_key": "sk-abc"}
    with pytest.raises(ConfigError, match="extra_params.api_key looks like a credential"):
        parse_config(raw)


def test_a_header_with_a_line_break_is_refused_at_load():
    """It would end the header or inject another: said at load, naming the header, not as a failed request."""
    raw = _raw()
    raw["models"]["strong"]["headers"] = {"X-Team": "research\r\nX-Evil: 1"}
    with pytest.raises(ConfigError, match=r"models.strong: .*headers.X-Team.*line break"):
        parse_config(raw)


def test_rip_pilot_must_fit_the_filter_workers():
    """A RIP pilot larger than the filter pool would wait forever; the config says so up front."""
    raw = yaml.safe_load((QUICKSTART.parent / "open_ended.yaml").read_text())
    raw["rip"]["pilot"] = 64
    with pytest.raises(ConfigError, match=r"rip: .*pilot \(64\) must not exceed concurrency \(32\)"):
        parse_config(raw)


def test_filter_section_must_match_the_task():
    """A 'rip:' section on a verifiable task (or 'vote:' on an open-ended one) is refused, not ignored."""
    raw = yaml.safe_load((QUICKSTART.parent / "open_ended.yaml").read_text())
    raw["vote"] = {"model": "cheap"}
    with pytest.raises(ConfigError, match="'vote:' is the verifiable filter"):
        parse_config(raw)


def test_an_empty_section_takes_overrides(tmp_path):
    """`budget:` left empty is null: an override (e.g. --budget) sets it instead of crashing."""
    import yaml as _yaml

    from conftest import QUICKSTART

    raw = _yaml.safe_load(Path(QUICKSTART).read_text())
    raw["budget"] = None
    raw["seeds"]["path"] = str(Path(QUICKSTART).parents[1] / raw["seeds"]["path"])
    path = tmp_path / "c.yaml"
    path.write_text(_yaml.safe_dump(raw))
    assert load_config(path, {"budget.usd": 0.5}).budget.usd == 0.5


def test_a_folder_or_binary_file_is_a_config_error_not_a_traceback(tmp_path):
    (tmp_path / "quickstart").mkdir()
    with pytest.raises(ConfigError, match="a folder"):
        load_config(tmp_path / "quickstart")
    (tmp_path / "bin.yaml").write_bytes(b"\xff\xfe\x00bad")
    with pytest.raises(ConfigError, match="not a text file"):
        load_config(tmp_path / "bin.yaml")


def test_agen_run_name_finds_the_builtin_when_a_folder_has_that_name(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from agen.app.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").mkdir()
    res = CliRunner().invoke(cli, ["run", "quickstart", "--out", str(tmp_path / "q"), "--proposals", "1",
                                   "--target", "1"])
    assert res.exit_code == 0, res.output


@pytest.mark.parametrize("url", ["http://127.0.0.1:99999/v1", "http:///v1"])
def test_a_malformed_base_url_is_a_config_error_exit_2(tmp_path, url):
    """It used to reach preflight and exit 6 ('unreachable') for what is a typo in the config."""
    from click.testing import CliRunner

    from agen.app.cli import cli

    raw = _raw()
    raw["models"]["strong"]["base_url"] = url
    raw["seeds"]["path"] = str(QUICKSTART.parent.parent / raw["seeds"]["path"])
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(raw))
    res = CliRunner().invoke(cli, ["run", str(path), "--out", str(tmp_path / "r")])
    assert res.exit_code == 2 and "models.strong" in res.output and "base_url" in res.output, res.output
    assert not (tmp_path / "r").exists()
