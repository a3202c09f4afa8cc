"""Smoke runs of the benchmarks (--quick): each runs on a tiny size and prints a table and a JSON line.

Never timing assertions: this machine's speed is not what the suite checks.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = ("engine_overhead", "latency_throughput", "memory", "dedup_store", "strategy_cost", "filter_precision", "loop_lag")
ALONE = ("drain",)  # it times what leaves after a signal: seven neighbours on two cores would time them


@pytest.fixture(scope="module")
def outputs() -> dict[str, tuple[int, str, str]]:
    """The quick runs, SCRIPTS at once (they mostly wait on subprocess start-up and the sim), then ALONE."""
    out = _quick_runs(SCRIPTS)
    out.update(_quick_runs(ALONE))
    return out


def _quick_runs(names: tuple[str, ...]) -> dict[str, tuple[int, str, str]]:
    procs = {name: subprocess.Popen([sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for name in names}
    out = {}
    for name, p in procs.items():
        try:
            stdout, stderr = p.communicate(timeout=900)  # a hang guard: 7 at once on 2 loaded cores are slow
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
        out[name] = (p.returncode, stdout, stderr)
    return out


def _doc(outputs: dict[str, tuple[int, str, str]], name: str) -> tuple[list[str], dict]:
    code, stdout, stderr = outputs[name]
    assert code == 0, stderr[-3000:]
    lines = stdout.strip().splitlines()
    doc = orjson.loads(lines[-1])
    assert doc["benchmark"] == name
    assert len(lines) >= 3  # a table before the JSON line
    return lines, doc


def test_engine_overhead_quick(outputs) -> None:
    """engine_overhead --quick reports CPU per 1k requests for both paths and their ratio."""
    _, doc = _doc(outputs, "engine_overhead")
    assert doc["requests"] > 0 and doc["bare_ok"] == doc["requests"]
    assert doc["agen_cpu_s_per_1k"] > 0 and doc["bare_cpu_s_per_1k"] > 0 and doc["ratio"] > 0


def test_engine_overhead_instruction_children_run_without_valgrind() -> None:
    """`--instructions` runs each side as a `--child` under callgrind; the children themselves are
    checked here without it (valgrind may be absent, and under it they take minutes): the agen
    child's run gives the mix the bare child is then given."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import engine_overhead
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    _, mix = engine_overhead._counted(["agen", "20"], valgrind=False)
    assert mix["requests"] == mix["gen"] + mix["votes"] > 0 and mix["samples"] >= mix["votes"]
    assert engine_overhead._counted(["agen", "0"], valgrind=False)[1] == {"requests": 0}  # the warm-up alone
    bare = ["bare", str(mix["gen"]), str(mix["votes"]), str(mix["samples"])]
    assert engine_overhead._counted(bare, valgrind=False)[1]["requests"] == mix["requests"]


def test_latency_throughput_quick(outputs) -> None:
    """latency_throughput --quick reports achieved req/s and its share of C/latency per concurrency."""
    _, doc = _doc(outputs, "latency_throughput")
    (row,) = doc["results"]
    assert row["errors"] == 0 and row["req_per_s"] > 0 and 0 < row["share"] <= 1.5


def test_memory_quick(outputs) -> None:
    """memory --quick runs the pipeline at two sizes and reports each one's peak RSS."""
    _, doc = _doc(outputs, "memory")
    assert [r["tasks"] for r in doc["results"]] == [200, 500]
    assert all(r["accepted"] == r["tasks"] <= r["finished"] and r["peak_rss_mb"] > 0 for r in doc["results"])


def test_dedup_store_quick(outputs) -> None:
    """dedup_store --quick: past one spill, the index in files decides as the one in RAM (the script
    asserts it) and holds less of it in RAM; it reports the CPU per check of both."""
    _, doc = _doc(outputs, "dedup_store")
    (row,) = doc["results"]
    assert row["files"] >= 2 and row["spilled_file_mb"] > 0 and row["spilled_ram_mb"] < row["ram_index_mb"]
    assert row["preads_per_check"] > 0 and row["ram_mean_us"] > 0 and row["ratio"] > 0


def test_strategy_cost_quick(outputs) -> None:
    """strategy_cost --quick compares strategies on cost per accepted example and precision."""
    _, doc = _doc(outputs, "strategy_cost")
    names = [r["strategy"] for r in doc["results"]]
    assert names[:3] == ["frontier-only", "propose+amplify", "amplify-only"]
    for r in doc["results"]:
        assert r["accepted"] > 0 and r["cost_per_accepted"] > 0 and r["calls"] > 0
        assert 0 <= r["precision_candidates"] <= 1 and 0 <= r["precision_accepted"] <= 1


def test_loop_lag_quick(outputs) -> None:
    """loop_lag --quick runs ordinary and pathological answers; hard samples become undecidable."""
    _, doc = _doc(outputs, "loop_lag")
    base, hard = doc["baseline"], doc["pathological"]
    assert base["requests"] > 0 and hard["requests"] > 0 and base["votes_with_undecidable"] == 0
    assert hard["votes_with_undecidable"] > 0  # the power towers were caught, off the loop
    assert all(r["lag_max_ms"] >= r["lag_p99_ms"] >= r["lag_p50_ms"] >= 0 for r in (base, hard))
    for r in (base, hard):  # the busy-window gap is one of the whole run's gaps
        assert 0 <= r["max_gap_s_from_200_in_flight"] <= r["max_gap_s"]
        assert 1 <= r["max_gap_in_flight"] <= r["peak_in_flight"] and r["max_gap_before"]


def test_drain_quick(outputs) -> None:
    """drain --quick: after the SIGINT is handled nothing new is sent, and the resume pays nothing twice."""
    _, doc = _doc(outputs, "drain")
    assert doc["exit_code"] == 130 and doc["resume_exit_code"] == 0
    # a call's start is estimated as its end minus its latency, so a request admitted before the stop
    # that waited for a pooled connection can look later: hold the bound (<= 5% of in flight)
    assert doc["in_flight_at_signal"] > 0 and doc["started_after_handled"] <= 0.05 * doc["in_flight_at_signal"]
    assert doc["resume_redone_usd"] == 0
    # The sim's own record: what it read after the signal is at most what was on the wire then, plus
    # what left before the signal was handled (the 5% above). (Its "caught up" point is a heuristic:
    # under load the sim runs on time while sockets still hold requests sent before the signal. A
    # client-side log of every write showed 0 writes after the signal in a run where the sim read 634
    # requests after its "caught up".)
    assert doc["sim_received_after_signal"] <= doc["in_flight_at_signal"] + doc["started_after_signal"], \
        doc["sim_received_per_250ms"]


def test_filter_precision_quick(outputs) -> None:
    """filter_precision --quick scores precision before/after and recall in a world with and without traps."""
    _, doc = _doc(outputs, "filter_precision")
    rows = {r["trap_share"]: r for r in doc["results"]}
    assert set(rows) == {0.0, 0.3}
    for r in rows.values():
        assert r["voted"] > 0 and 0 <= r["precision_before"] <= 1 and 0 <= r["recall"] <= 1
    assert rows[0.0]["precision_after"] >= rows[0.0]["precision_before"]  # without traps the vote only helps
    assert rows[0.3]["precision_before"] < rows[0.0]["precision_before"]  # traps mis-state answers
    # with traps the solvers share the proposer's mistake, so the vote can keep a wrong answer: no claim
