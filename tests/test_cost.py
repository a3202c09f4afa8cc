"""Cost arithmetic and the cost book."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agen.config import Price, load_prices
from agen.errors import ConfigError
from agen.cost import CostBook, cost_usd
from agen.types import CallRecord, Usage

SIM_LARGE = Price(input=2.50, cached_input=1.25, output=10.00)


def test_cost_splits_cached_and_uncached_input() -> None:
    """Uncached input at `input`, cached at `cached_input`, output (reasoning included) at `output`."""
    u = Usage(input_tokens=1_000_000, cached_input_tokens=400_000, output_tokens=100_000, reasoning_tokens=50_000)
    assert cost_usd(u, SIM_LARGE) == pytest.approx(0.6 * 2.50 + 0.4 * 1.25 + 0.1 * 10.0)


def test_cost_defaults_cached_and_cache_write_to_input() -> None:
    """Without cached_input/cache_write prices, those tokens cost the input price."""
    p = Price(input=3.0, output=15.0)
    u = Usage(input_tokens=300, cached_input_tokens=100, cache_write_tokens=100, output_tokens=10)
    assert cost_usd(u, p) == pytest.approx((300 * 3.0 + 10 * 15.0) / 1e6)


def test_cost_cache_write_price() -> None:
    """Anthropic cache writes cost `cache_write`."""
    p = Price(input=3.0, cached_input=0.3, cache_write=3.75, output=15.0)
    u = Usage(input_tokens=2000, cached_input_tokens=1000, cache_write_tokens=500, output_tokens=0)
    assert cost_usd(u, p) == pytest.approx((500 * 3.0 + 1000 * 0.3 + 500 * 3.75) / 1e6)


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 10_000)), max_size=30))
def test_cost_is_additive(parts: list[tuple[int, int, int]]) -> None:
    """The cost of summed usage equals the sum of the costs."""
    usages = [Usage(input_tokens=a + b, cached_input_tokens=b, output_tokens=c) for a, b, c in parts]
    total = sum(usages, Usage())
    assert cost_usd(total, SIM_LARGE) == pytest.approx(sum(cost_usd(u, SIM_LARGE) for u in usages), abs=1e-12)


def test_price_table_has_required_models() -> None:
    """The shipped table covers the sim models and common OpenAI/Anthropic/open models."""
    t = load_prices()
    assert t["sim-large"] == SIM_LARGE
    assert t["sim-small"] == Price(input=0.15, cached_input=0.075, output=0.60)
    for name in ("gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o3", "o4-mini",
                 "claude-sonnet-4-0", "claude-opus-4-1", "claude-3-5-haiku-latest", "llama-3.3-70b-versatile"):
        assert name in t


def _rec(model: str, stage: str, outcome: str, usage: Usage) -> CallRecord:
    return CallRecord(ts=0.0, model=model, stage=stage, task_id="t", outcome=outcome, status=200, usage=usage,
                      cost_usd=cost_usd(usage, SIM_LARGE), latency_s=0.1)


def test_costbook_totals_by_model_stage_and_pair() -> None:
    """CostBook sums usage, cost and calls by model, stage and (stage, model), failed billed calls included."""
    book = CostBook()
    a = Usage(input_tokens=100, output_tokens=10)
    book.add(_rec("big", "propose", "ok", a))
    book.add(_rec("big", "vote", "ok", a))
    book.add(_rec("small", "vote", "bad_response", a))  # billed though unusable
    book.add(_rec("small", "vote", "throttle", Usage()))
    assert book.total_tokens == 330
    assert book.total_usd == pytest.approx(3 * cost_usd(a, SIM_LARGE))
    snap = book.snapshot()
    assert snap["by_model"]["small"]["calls"] == 2 and snap["by_model"]["small"]["ok_calls"] == 0
    assert snap["by_stage"]["vote"]["input_tokens"] == 200
    assert snap["by_stage_model"]["vote/small"]["output_tokens"] == 10
    assert snap["total"]["calls"] == 4


def test_batch_calls_cost_half_of_every_rate() -> None:
    """The shipped table bills batch calls at 50% of input, cached input, cache writes and output on both
    providers (OpenAI Batch API, Anthropic Message Batches); an online call is unchanged."""
    t = load_prices()
    u = Usage(input_tokens=2_000_000, cached_input_tokens=500_000, cache_write_tokens=300_000, output_tokens=400_000)
    for name in ("gpt-4o-mini", "gpt-5", "claude-sonnet-4-5", "claude-haiku-4-5", "sim-large", "sim-small"):
        p = t[name]
        assert cost_usd(u, p, batch=True) == pytest.approx(0.5 * cost_usd(u, p))
        assert cost_usd(u, p, batch=False) == cost_usd(u, p)
    s = t["claude-sonnet-4-5"].rates(batch=True)
    assert (s.input, s.cached_input, s.cache_write, s.output) == (1.50, 0.15, 1.875, 7.50)


def test_batch_rates_per_model_override() -> None:
    """A model's own `batch` rates or `batch_share` win over the table's share; a run config's price without
    either gets the providers' 50%."""
    own = Price.model_validate({"input": 2.0, "output": 8.0, "batch": {"input": 1.5, "output": 3.0}})
    u = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost_usd(u, own, batch=True) == pytest.approx(1.5 + 3.0)
    assert cost_usd(u, Price(input=2.0, output=8.0, batch_share=0.25), batch=True) == pytest.approx(2.5)
    assert cost_usd(u, Price(input=2.0, output=8.0), batch=True) == pytest.approx(5.0)
    with pytest.raises(TypeError):
        cost_usd(u, own.rates(batch=True), batch=True)  # bare rates carry no batch rates


def test_price_table_batch_share_is_read(tmp_path: Path) -> None:
    """The table's top-level batch_share fills every model that does not set its own."""
    p = tmp_path / "prices.yaml"
    p.write_text("as_of: 2026-11-01\nbatch_share: 0.4\nmodels:\n  a: {input: 1.0, output: 2.0}\n"
                 "  b: {input: 1.0, output: 2.0, batch_share: 0.9}\n")
    t = load_prices(p)
    assert t["a"].rates(batch=True).output == pytest.approx(0.8)
    assert t["b"].rates(batch=True).output == pytest.approx(1.8)
    p.write_text("batch_share: 2\nmodels:\n  a: {input: 1.0, output: 2.0}\n")
    with pytest.raises(ConfigError, match="not a valid price table"):
        load_prices(p)
