"""Shared fixtures: the simulated provider over HTTP, run configs for it, and reading a run directory back."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, settings

from agen.config import RunConfig, parse_config
from agen.run.shards import read_records
from agen.sim import SimServer, start_sim
from agen.sim.redis_process import RedisProcess, redis_server_binary

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
SIM_MODELS = ROOT / "configs" / "sim_models.yaml"
FAST = {"latency_ms": {"median": 0, "sigma": 0}}  # a sim model setting: answer without simulated latency

# Property tests check properties, not speed: hypothesis's per-example deadline (200 ms) and its
# "data generation too slow" health check are timed assertions that a loaded machine trips.
settings.register_profile("agen", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("agen")


@pytest.fixture
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[SimServer]:
    """The simulated provider on a free port, configured by the test module's `CFG`."""
    server = await start_sim(request.module.CFG)
    yield server
    await server.aclose()


def need_redis_server() -> None:
    """Skip (fail in CI) when redis-server is not installed."""
    if redis_server_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is missing in CI (.ci/run installs it)")
        pytest.skip("redis-server is not installed (apt-get install redis-server); .ci/run installs it")


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A fresh, empty redis-server of the test's own on a free port."""
    need_redis_server()
    with RedisProcess() as r:
        yield r.url


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def script(http: aiohttp.ClientSession, sim: SimServer, model: str, *items: dict[str, Any]) -> None:
    """Queue scripted responses for `model` on the sim (`POST /sim/script`)."""
    async with http.post(sim.base_url + "/sim/script", json={"model": model, "responses": list(items)}) as r:
        assert r.status == 200


def sim_config_file(tmp_path: Path, *, faults: dict[str, Any] | None = None, latency_ms: float | None = None,
                    **model_overrides: Any) -> Path:
    """A copy of configs/sim_models.yaml with faults or behaviour changed on every model."""
    raw = yaml.safe_load(SIM_MODELS.read_text())
    for m in raw["models"].values():
        if faults:
            m.setdefault("faults", {}).update(faults)
        if latency_ms is not None:
            m["latency_ms"] = {"median": latency_ms, "sigma": 0.2}
        m.update(model_overrides)
    path = tmp_path / "sim.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def quick_raw(tmp_path: Path, *, proposals: int = 8, target: int = 40, **sections: Any) -> dict[str, Any]:
    """The quick-start config as a dict, small targets, output inside tmp_path."""
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["seeds"]["path"] = str(ROOT / "data" / "gsm8k_sample.jsonl")
    raw["propose"]["target"] = proposals
    raw["amplify"]["target"] = target
    raw["output"]["dir"] = str(tmp_path / "run")
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key].update(value)
        else:
            raw[key] = value
    return raw


def quick_cfg(tmp_path: Path, **kw: Any) -> RunConfig:
    return parse_config(quick_raw(tmp_path, **kw))


def records(run_dir: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for stream in ("accepted", "rejected"):
        if (run_dir / stream).exists():
            out.extend(read_records(run_dir / stream))
    return out


@pytest.fixture
def tmp_run(tmp_path: Path) -> Path:
    return tmp_path
