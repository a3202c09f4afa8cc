"""Preflight over real HTTP: a wrong URL, scheme, port, model or key is reported in seconds with the
endpoint, the status and the server's message, and nothing is written or started."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from agen.app.runner import EXIT_INPUT, EXIT_OK, EXIT_PROVIDER, EXIT_UNREACHABLE, run_session
from agen.config import parse_config
from agen.sim.process import SimProcess
from conftest import quick_raw, sim_config_file

PRICE = {"input": 1.0, "output": 1.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _external(tmp_path: Path, base_url: str, **model: object) -> dict:
    """The quick start aimed at `base_url` (no simulator child), small targets."""
    raw = quick_raw(tmp_path, proposals=2, target=4)
    raw.pop("simulator")
    for m in raw["models"].values():
        m.update(base_url=base_url, **model)
    return raw


def _refused(raw: dict, code: int, *words: str) -> str:
    out = run_session(parse_config(raw), live=False)
    assert out.exit_code == code, out.message
    for w in words:
        assert w in out.message, out.message
    assert not Path(raw["output"]["dir"]).exists()  # no run directory, no seed work
    return out.message


def test_closed_port_is_unreachable(tmp_path):
    url = f"http://127.0.0.1:{free_port()}/v1"
    _refused(_external(tmp_path, url), EXIT_UNREACHABLE, "preflight", "cannot connect", "models.strong",
             url + "/models", "--no-preflight")


def test_wrong_scheme_is_named(tmp_path):
    _refused(_external(tmp_path, "htp://127.0.0.1:9/v1"), EXIT_INPUT, "scheme 'htp' is not http or https")


@pytest.fixture
def keyed_sim(tmp_path):
    path = sim_config_file(tmp_path, latency_ms=2)
    path.write_text("require_api_key: right-key\n" + path.read_text().replace("require_api_key: null\n", ""))
    with SimProcess(path) as sim:
        yield sim


def test_wrong_model_name_is_reported_with_what_the_server_serves(tmp_path, monkeypatch, keyed_sim):
    monkeypatch.setenv("AGEN_TEST_KEY", "right-key")
    raw = _external(tmp_path, keyed_sim.base_url + "/v1", api_key_env="AGEN_TEST_KEY")
    raw["models"]["strong"].update(model="sim-lage", price=PRICE)
    _refused(raw, EXIT_INPUT, "models.strong", "HTTP 404", "sim-lage", "does not exist", "endpoint serves: sim-fast, sim-large")


def test_wrong_path_is_a_404_with_a_hint(tmp_path, monkeypatch, keyed_sim):
    monkeypatch.setenv("AGEN_TEST_KEY", "right-key")
    raw = _external(tmp_path, keyed_sim.base_url + "/api", api_key_env="AGEN_TEST_KEY")
    _refused(raw, EXIT_INPUT, "HTTP 404", "/api/chat/completions", "usually end in /v1")


def test_wrong_key_is_401_with_the_server_message(tmp_path, monkeypatch, keyed_sim):
    monkeypatch.setenv("AGEN_TEST_KEY", "wrong-key")
    raw = _external(tmp_path, keyed_sim.base_url + "/v1", api_key_env="AGEN_TEST_KEY")
    msg = _refused(raw, EXIT_PROVIDER, "HTTP 401", "Incorrect API key", "models.cheap", "models.strong")
    assert "wrong-key" not in msg


def test_right_key_passes_and_no_preflight_skips_the_check(tmp_path, monkeypatch, keyed_sim):
    monkeypatch.setenv("AGEN_TEST_KEY", "right-key")
    raw = _external(tmp_path, keyed_sim.base_url + "/v1", api_key_env="AGEN_TEST_KEY")
    out = run_session(parse_config(raw), live=False)
    assert out.exit_code == EXIT_OK, out.message
    # with the check skipped, a dead endpoint is found by the run itself, after the run dir exists
    dead = _external(tmp_path / "dead", f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    out = run_session(parse_config(dead), live=False, probe=False)
    assert out.exit_code != EXIT_OK and Path(dead["output"]["dir"]).exists()


def test_an_endpoint_unreachable_mid_run_exits_6_and_resumes_once_it_listens(tmp_path):
    """With the preflight skipped, the run itself finds nothing listening: the endpoint breaker stops
    it (exit 6, naming the endpoint); once a server listens on that port, `agen resume` finishes."""
    from click.testing import CliRunner

    from agen.app.cli import cli

    port = free_port()
    raw = _external(tmp_path, f"http://127.0.0.1:{port}/v1", unreachable_after_attempts=3)
    out = run_session(parse_config(raw), live=False, probe=False)
    assert out.exit_code == EXIT_UNREACHABLE, out.message
    assert "endpoint unreachable" in out.message and f"127.0.0.1:{port}" in out.message
    assert "agen resume" in out.message
    with SimProcess(sim_config_file(tmp_path, latency_ms=2), port=port):
        res = CliRunner().invoke(cli, ["resume", str(tmp_path / "run")])
    assert res.exit_code == EXIT_OK, res.output
