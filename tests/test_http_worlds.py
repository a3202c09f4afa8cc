"""Whole runs against a sim that speaks HTTP/1.1 the way servers in the wild do (`http:` in the sim
config): idle connections closed after 50 ms, one answer in four closing its connection, chunked and
gzip bodies. Both HTTP clients (`models.*.http_client`) must meet the target; agen's own pool with
its requests answered, not retried into it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
import yaml

from agen.app.runner import EXIT_OK, run_session
from agen.run.rundir import read_ledger
from conftest import SIM_MODELS, quick_raw, records
from agen.config import parse_config

WILD_HTTP = {"keepalive_s": 0.05, "close_p": 0.25, "chunked": True, "gzip": True}


@pytest.mark.parametrize("client", ["agen", "aiohttp"])
def test_a_run_meets_its_target_against_servers_that_close_chunk_and_compress(tmp_path: Path, client: str) -> None:
    sim = yaml.safe_load(SIM_MODELS.read_text())
    sim["http"] = WILD_HTTP
    for m in sim["models"].values():
        m["latency_ms"] = {"median": 30, "sigma": 0.5}  # some connections sit idle past the 50 ms keep-alive
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(sim))
    raw = quick_raw(tmp_path, proposals=6, target=30, simulator={"config": str(path)})
    for m in raw["models"].values():
        m["http_client"] = client
    cfg = parse_config(raw)
    out = run_session(cfg, live=False)
    assert out.exit_code == EXIT_OK, out.message
    recs = records(Path(cfg.output.dir))
    assert sum(r["status"] == "accepted" for r in recs) >= 36
    outcomes = Counter(c["outcome"] for c in read_ledger(Path(cfg.output.dir)).calls)
    print(client, dict(outcomes))
    # A reused connection the server closed at the moment it was picked fails its attempt (retried).
    # The lean pool sees a close as it happens and drops the connection (0 of ~220 measured);
    # aiohttp's pool reuses closed ones (7-35 of ~220-250 measured), which the attempt loop retries:
    # for it the test holds only that the run gets there.
    assert outcomes["ok"] >= 100
    if client == "agen":
        assert outcomes["capacity"] <= 0.02 * outcomes["ok"]
