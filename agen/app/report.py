"""`agen report`: a run directory's figures as a self-contained HTML page and the same figures as JSON.

Everything is read from the run directory's data files (finished, interrupted or still running):
the funnel and spend from `agen.app.status.snapshot_from_files` (the figures `agen status` and the
end-of-run summary print), time series, latencies and 429s from the ledger's call lines, vote
margins from the records. Charts are inline SVG (`agen.app.report_svg`), so the page needs no network.

    RUN_DIR/report.json   {"run", "headline", "funnel", "cost" (incl. "cache": hit share and USD saved),
                           "throughput", "latency", "votes", "rip", "engine"}
    RUN_DIR/report.html   the same, drawn
"""

from __future__ import annotations

import bisect
import math
import time
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable
from html import escape
from pathlib import Path
from typing import Any

import orjson

from agen.app.report_svg import fmt_num, fmt_usd, hbars, vbars
from agen.app.status import snapshot_from_files
from agen.app.summary import cache_figures, cost_rows, funnel_rows
from agen.config import load_prices, price_for
from agen.cost import cost_usd
from agen.engine.fewshot import COVERAGE_TASKS, coverage
from agen.errors import ConfigError
from agen.run.rundir import atomic_write, load_snapshot, read_ledger
from agen.run.shards import read_records
from agen.types import Usage

TOKEN_KINDS = ("input", "cached_input", "cache_write", "output")
MAX_TIME_BINS = 60
LATENCY_BINS = 30
SHARE_BINS = 20


def _role(stage: str) -> str:
    """The part a call plays: proposer, amplifier, or the voters of a stage."""
    base, _, sub = stage.partition(".")
    if sub:
        return f"{base} voters" if sub == "vote" else f"{base} {sub}"
    return {"propose": "proposer", "amplify": "amplifier"}.get(stage, stage)


def _pct(sorted_vals: array, q: float) -> float:
    if not sorted_vals:
        return 0.0
    return sorted_vals[min(len(sorted_vals) - 1, max(0, math.ceil(q * len(sorted_vals)) - 1))]


def _nice_step(span: float, bins: int) -> float:
    raw = max(span, 1e-3) / bins
    mag = 10 ** math.floor(math.log10(raw))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


# ---- figures ---------------------------------------------------------------------------------


def funnel_figures(stages: dict[str, Any]) -> dict[str, Any]:
    """Per stage: the gates a candidate passes (committed → generated → parsed → unique → judged →
    accepted) and every rejection reason with its count."""
    out = {}
    summary_rows = {r["stage"]: r for r in funnel_rows(stages)}
    for name, s in stages.items():
        reasons: dict[str, int] = s["reasons"]
        by = lambda *prefixes: sum(n for r, n in reasons.items() if r.startswith(prefixes))  # noqa: E731
        finished = s["finished"]
        generated = finished - by("generate_failed")
        parsed = generated - by("parse:")
        unique = parsed - by("duplicate:")
        judged = unique - by("vote_failed", "filter_failed", "rip_failed")
        out[name] = {"target": s["target"], "accepted": s["accepted"], "finished": finished,
                     "steps": {"finished": finished, "generated": generated, "parsed": parsed,
                               "unique": unique, "judged": judged, "accepted": s["accepted"]},
                     "rejections": dict(sorted(((r, n) for r, n in reasons.items()
                                                if r not in ("vote:agree", "rip:keep")),
                                               key=lambda kv: -kv[1])),
                     "reasons": dict(reasons),
                     "summary_row": summary_rows[name]}
    return out


def _prices(root: Path) -> dict[str, Any]:
    """Price per config model name, for splitting spend by token kind; {} if unknown."""
    try:
        cfg = load_snapshot(root)
        table = load_prices()
        return {name: price_for(name, m, table) for name, m in cfg.models.items()}
    except (ConfigError, OSError, KeyError):
        return {}


def cost_figures(snap: dict[str, Any], prices: dict[str, Any]) -> dict[str, Any]:
    """Cost per accepted example by stage (as the summary computes it), split by role, model and
    token kind. Token-kind dollars are priced from the run's price table (the ledger keeps only
    each call's total), so they can differ from the ledger's total if prices changed since."""
    accepted = {n: s["accepted"] for n, s in snap["stages"].items()}
    per_stage = [{"stage": n, "cost_usd": usd, "accepted": acc, "cost_per_accepted": per}
                 for n, usd, acc, per in cost_rows(snap)]
    parts = []
    for key, t in snap["costs"]["by_stage_model"].items():
        stage, _, model = key.partition("/")
        base = stage.split(".", 1)[0]
        kinds: dict[str, float] | None = None
        price = prices.get(model)
        if price is not None:
            uncached = max(0, t["input_tokens"] - t["cached_input_tokens"] - t["cache_write_tokens"])
            kinds = {"input": cost_usd(Usage(uncached, 0, 0, 0, 0), price),
                     "cached_input": cost_usd(Usage(t["cached_input_tokens"], t["cached_input_tokens"], 0, 0, 0), price),
                     "cache_write": cost_usd(Usage(t["cache_write_tokens"], 0, t["cache_write_tokens"], 0, 0), price),
                     "output": cost_usd(Usage(0, 0, 0, t["output_tokens"], 0), price)}
        acc = accepted.get(base, 0)
        parts.append({"stage": stage, "base_stage": base, "role": _role(stage), "model": model,
                      "calls": t["calls"], "ok_calls": t["ok_calls"], "cost_usd": t["cost_usd"],
                      "input_tokens": t["input_tokens"], "cached_input_tokens": t["cached_input_tokens"],
                      "cache_write_tokens": t["cache_write_tokens"], "output_tokens": t["output_tokens"],
                      "cost_by_token_kind": kinds,
                      "cost_per_accepted": t["cost_usd"] / acc if acc else None})
    return {"per_stage": per_stage, "parts": parts, "total": snap["costs"]["total"],
            "cache": cache_figures(snap["costs"])}


def ledger_figures(calls: Iterable[dict[str, Any]], created: list[float]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(throughput, latency): calls per second by outcome, 429s and accepted examples over time;
    latency distribution and percentiles per model. One pass over `calls` (streamed from the
    ledger), keeping 9 bytes a call."""
    ts = array("d")
    kind = array("b")  # 0 ok, 1 throttled, 2 other error
    statuses: Counter[str] = Counter()
    outcomes: Counter[str] = Counter()
    lat: dict[str, array] = defaultdict(lambda: array("d"))
    for c in calls:
        ts.append(c.get("ts", 0.0))
        outcome = c.get("outcome", "?")
        outcomes[outcome] += 1
        statuses[str(c.get("status"))] += 1
        kind.append(1 if c.get("status") == 429 or outcome == "throttle" else 0 if outcome == "ok" else 2)
        if outcome == "ok":
            lat[c["model"]].append(float(c.get("latency_s") or 0.0))
    lo = min(min(ts, default=math.inf), min(created, default=math.inf))
    hi = max(max(ts, default=-math.inf), max(created, default=-math.inf))
    t0, t1 = (lo, hi) if ts or created else (0.0, 0.0)
    step = _nice_step(t1 - t0, MAX_TIME_BINS)
    nb = max(1, math.ceil((t1 - t0) / step + 1e-9))
    bins = ([0] * nb, [0] * nb, [0] * nb)  # ok, throttled, errors
    accepted = [0] * nb
    for t, k in zip(ts, kind):
        bins[k][min(nb - 1, int((t - t0) / step))] += 1
    ok, throttled, errors = bins
    for t in created:
        accepted[min(nb - 1, int((t - t0) / step))] += 1
    span = max(t1 - t0, 1e-9)
    throughput = {
        "t0": t0, "bin_s": step, "span_s": t1 - t0, "calls": len(ts),
        "calls_per_s": len(ts) / span if ts else 0.0,
        "throttled_429": sum(throttled), "outcomes": dict(outcomes), "statuses": dict(statuses),
        "bins": {"start_s": [i * step for i in range(nb)], "ok": ok, "throttled_429": throttled,
                 "other_errors": errors, "accepted": accepted},
    }
    latency: dict[str, Any] = {}
    all_vals = [v for a in lat.values() for v in a if v > 0]
    if all_vals:
        lo, hi = max(min(all_vals), 1e-4), max(all_vals) * 1.0001
        if hi <= lo * 1.01:
            hi = lo * 1.5
        ratio = (hi / lo) ** (1 / LATENCY_BINS)
        edges = [lo * ratio ** i for i in range(LATENCY_BINS + 1)]
    else:
        edges = [0.001, 1.0]
    for model, vals in sorted(lat.items()):
        s = array("d", sorted(vals))
        counts = [0] * (len(edges) - 1)
        for v in s:
            counts[min(len(counts) - 1, max(0, bisect.bisect_right(edges, v) - 1))] += 1
        latency[model] = {"n": len(s), "mean_s": sum(s) / len(s), "p50_s": _pct(s, 0.5), "p90_s": _pct(s, 0.9),
                          "p99_s": _pct(s, 0.99), "max_s": s[-1], "hist": {"edges_s": edges, "counts": counts}}
    return throughput, latency


def vote_figures(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Vote margins: share of samples agreeing with the candidate's answer, the majority's share,
    and samples used (early stopping), split by accepted/rejected."""
    edges = [i / SHARE_BINS for i in range(SHARE_BINS + 1)]
    agree = {"accepted": [0] * SHARE_BINS, "rejected": [0] * SHARE_BINS}
    major = {"accepted": [0] * SHARE_BINS, "rejected": [0] * SHARE_BINS}
    samples: dict[str, Counter[int]] = {"accepted": Counter(), "rejected": Counter()}
    k_max, early, n = 0, 0, 0
    for r in records:
        v = r.get("vote")
        if not v or not v.get("samples"):
            continue
        n += 1
        side = "accepted" if r["status"] == "accepted" else "rejected"
        share = v["agree"] / v["samples"]
        agree[side][min(SHARE_BINS - 1, int(share * SHARE_BINS))] += 1
        major[side][min(SHARE_BINS - 1, int(float(v.get("majority_share") or 0) * SHARE_BINS))] += 1
        samples[side][int(v["samples"])] += 1
        k_max = max(k_max, int(v.get("k") or 0), int(v["samples"]))
        early += bool(v.get("early_stopped"))
    used = sum(s * c for side in samples.values() for s, c in side.items())
    return {"voted": n, "k": k_max, "early_stopped": early, "samples_used": used,
            "samples_full_vote": n * k_max, "share_edges": edges, "agree_share": agree, "majority_share": major,
            "samples_hist": {side: [samples[side].get(i, 0) for i in range(1, k_max + 1)] for side in samples}}


RIP_METRICS = (("min_reward", "min_reward", "Lowest reward (τ1 = {t}, keep ≥)"),
               ("min_reward_len", "min_len", "Its response's words (τ2 = {t}, keep ≥)"),
               ("gap", "max_gap", "Best − worst reward (τ3 = {t}, keep ≤)"))


def rip_figures(records: list[dict[str, Any]], bins: int = 20) -> dict[str, Any]:
    """RIP's three metrics as histograms split by kept/rejected, with the frozen thresholds."""
    judged = [r for r in records if r.get("rip", {}).get("metrics")]
    out: dict[str, Any] = {"judged": len(judged), "judge_failures": sum(r["rip"].get("judge_failures") or 0
                                                                         for r in records if r.get("rip")),
                           "thresholds": judged[0]["rip"].get("thresholds") if judged else None, "metrics": {}}
    for metric, _, _ in RIP_METRICS:
        vals = [float(r["rip"]["metrics"][metric]) for r in judged]
        if not vals:
            continue
        lo, hi = min(vals), max(vals)
        width = (hi - lo) / bins or 1.0
        edges = [lo + i * width for i in range(bins + 1)]
        hist = {"accepted": [0] * bins, "rejected": [0] * bins}
        for r, v in zip(judged, vals):
            side = "accepted" if r["status"] == "accepted" else "rejected"
            hist[side][min(bins - 1, int((v - lo) / width))] += 1
        out["metrics"][metric] = {"edges": edges, **hist}
    return out


def build_report(root: Path) -> dict[str, Any]:
    """Every figure of the report, JSON-ready."""
    root = Path(root)
    snap = snapshot_from_files(root)
    cfg = load_snapshot(root)
    records: list[dict[str, Any]] = []
    created: list[float] = []
    amplify_shown: list[tuple[str, list[str]]] = []
    proposals: set[str] = set()
    for stream in ("accepted", "rejected"):
        folder = root / stream
        if not folder.exists():
            continue
        for r in read_records(folder):
            if stream == "accepted":
                created.append(float(r.get("created") or 0.0))
                if r["stage"] == "propose":
                    proposals.add(r["id"])
            if r["stage"] == "amplify":
                amplify_shown.append((r["id"], r.get("seeds") or []))
            if r.get("vote"):
                records.append({"status": r["status"], "vote": {k: r["vote"].get(k) for k in
                                ("samples", "agree", "k", "majority_share", "early_stopped")}})
            elif r.get("rip"):
                records.append({"status": r["status"], "rip": {k: r["rip"].get(k) for k in
                                ("metrics", "thresholds", "judge_failures")}})
    ledger = read_ledger(root)
    throughput, latency = ledger_figures(ledger.calls, created)
    funnel = funnel_figures(snap["stages"])
    cost = cost_figures(snap, _prices(root))
    accepted = sum(s["accepted"] for s in snap["stages"].values())
    total = snap["costs"]["total"]["cost_usd"]
    return {
        "run": {"dir": str(root), "fingerprint": snap["fingerprint"], "sessions": snap["session"] + 1,
                "task": cfg.task, "models": {n: m.model for n, m in cfg.models.items()},
                "generated_at": time.time()},
        "headline": {"accepted": accepted, "target": sum(s["target"] for s in snap["stages"].values()),
                     "finished": sum(s["finished"] for s in snap["stages"].values()),
                     "cost_usd": total, "cost_per_accepted_usd": total / accepted if accepted else None,
                     "calls": throughput["calls"], "throttled_429": throughput["throttled_429"],
                     "span_s": throughput["span_s"], "calls_per_s": throughput["calls_per_s"],
                     "billing_unknown_requests": snap["previous_sessions"]["billing_unknown_requests"],
                     "redone_usd": snap["previous_sessions"]["redone_usd"]},
        "funnel": funnel, "cost": cost, "throughput": throughput, "latency": latency,
        "votes": vote_figures(records),
        "rip": rip_figures(records),
        "fewshot": coverage([ids for _, ids in sorted(amplify_shown)[:COVERAGE_TASKS]], proposals,
                            len(proposals)).as_dict(),
        "endpoints": _endpoints(root),
        "engine": _last_session_engine(root),
    }


def _last_session_engine(root: Path) -> dict[str, Any]:
    """Event-loop lag and "$ redone" of the latest session, from its manifest (a hint; {} if none)."""
    try:
        snap = orjson.loads((root / "manifest.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return {k: snap[k] for k in ("loop_lag", "redone_usd", "replayed") if k in snap}


def _endpoints(root: Path) -> dict[str, Any]:
    """What each endpoint was learned (or stated) to do, as the last session's manifest recorded it."""
    try:
        return orjson.loads((root / "manifest.json").read_bytes()).get("endpoints") or {}
    except (OSError, orjson.JSONDecodeError, AttributeError):
        return {}


def _endpoints_html(endpoints: dict[str, Any]) -> str:
    rows = [[lane, k, ", ".join(v) if isinstance(v, list) else str(v), f.get("source", {}).get(k, "")]
            for lane, f in endpoints.items() for k, v in f.items() if k != "source"]
    return "<h2>Endpoints</h2>" + _table(["model", "fact", "value", "source"], rows) if rows else ""


# ---- HTML ------------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1180px;
color:#222;padding:0 16px;background:#fafafa}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 6px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;font-size:13px}.cards{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.card{background:#fff;border:1px solid #e3e3e3;border-radius:8px;padding:10px 14px;min-width:130px}
.card b{display:block;font-size:20px}.card span{color:#666;font-size:12px}
.grid{display:flex;flex-wrap:wrap;gap:8px 18px}.chart{background:#fff;border:1px solid #eee;border-radius:6px;margin:6px 0}
table{border-collapse:collapse;font-size:12px;background:#fff;margin:6px 0}
td,th{border:1px solid #e3e3e3;padding:3px 8px;text-align:right}th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
p.note{font-size:12px;color:#666;max-width:900px}
"""


def _card(value: str, label: str) -> str:
    return f"<div class='card'><b>{escape(value)}</b><span>{escape(label)}</span></div>"


def _table(head: list[str], rows: list[list[Any]]) -> str:
    h = "".join(f"<th>{escape(x)}</th>" for x in head)
    b = "".join("<tr>" + "".join(f"<td>{escape(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{b}</table>"


def _funnel_html(funnel: dict[str, Any]) -> str:
    parts = []
    for stage, f in funnel.items():
        if not f["finished"]:
            parts.append(f"<p class='note'>{escape(stage)}: nothing committed yet.</p>")
            continue
        steps = [(k, [("candidates", float(v))]) for k, v in f["steps"].items()]
        parts.append(hbars(steps, title=f"{stage}: acceptance funnel (target {f['target']})", width=560,
                           label_w=90, fmt=lambda x: f"{x:,.0f}", integer=True))
        rej = [(r, [(r.split(":", 1)[0], float(n))]) for r, n in f["rejections"].items()]
        if rej:
            parts.append(hbars(rej, title=f"{stage}: why candidates were rejected", width=560, label_w=230,
                               fmt=lambda x: f"{x:,.0f}", integer=True))
    return "<div class='grid'>" + "".join(parts) + "</div>"


def _cost_html(cost: dict[str, Any]) -> str:
    out = []
    rows = []
    for ps in cost["per_stage"]:
        if ps["stage"] == "all" or not ps["accepted"]:
            continue
        segs = [(f"{p['role']} ({p['model']})", p["cost_usd"] / ps["accepted"])
                for p in cost["parts"] if p["base_stage"] == ps["stage"]]
        rows.append((f"{ps['stage']} ({ps['accepted']} acc.)", segs))
    allrow = next((p for p in cost["per_stage"] if p["stage"] == "all"), None)
    if allrow and allrow["accepted"]:
        rows.append((f"all ({allrow['accepted']} acc.)",
                     [(f"{p['role']} ({p['model']})", p["cost_usd"] / allrow["accepted"]) for p in cost["parts"]]))
    if rows:
        out.append(hbars(rows, title="Cost per accepted example, by role and model", fmt=fmt_usd, width=1100,
                         label_w=150))
    kinds = [(f"{p['role']} ({p['model']})",
              [(k, v) for k, v in (p["cost_by_token_kind"] or {}).items() if v > 0]) for p in cost["parts"]]
    if any(segs for _, segs in kinds):
        out.append(hbars(kinds, title="Spend by role and token kind (USD)", fmt=fmt_usd, width=1100, label_w=220))
    cache = cost.get("cache")
    if cache is not None:
        out.append(f"<p class='note'>Prompt cache: {cache['hit_share']:.1%} of prompt tokens read from cache; "
                   f"{fmt_usd(cache['saved_usd'])} saved against no caching, net of cache-write premiums.</p>")
    out.append(_table(["role", "stage/model", "calls", "input tok", "cached in", "cache hit", "output tok", "USD",
                       "USD / accepted"],
                      [[p["role"], f"{p['stage']}/{p['model']}", p["calls"], f"{p['input_tokens']:,}",
                        f"{p['cached_input_tokens']:,}",
                        f"{p['cached_input_tokens'] / p['input_tokens']:.0%}" if p["input_tokens"] else "-",
                        f"{p['output_tokens']:,}", f"{p['cost_usd']:.6f}",
                        "-" if p["cost_per_accepted"] is None else f"{p['cost_per_accepted']:.6f}"]
                       for p in cost["parts"]]))
    return "".join(out)


def _throughput_html(tp: dict[str, Any]) -> str:
    if not tp["calls"]:
        return "<p class='note'>No calls in the ledger yet.</p>"
    b, step = tp["bins"], tp["bin_s"]
    edges = [*b["start_s"], b["start_s"][-1] + step]
    per_s = lambda xs: [x / step for x in xs]  # noqa: E731
    series = [("ok", per_s(b["ok"])), ("429 throttled", per_s(b["throttled_429"])),
              ("other errors", per_s(b["other_errors"]))]
    cols = ["#54A24B", "#E45756", "#F58518"]
    return (vbars(edges, series, title=f"Requests per second by outcome ({tp['throttled_429']} × 429 in all)",
                  width=1100, height=280, x_label="seconds since the run's first call", y_label="requests / s",
                  colors=cols, lines=[("accepted / s (right axis)", per_s(b["accepted"]))])
            + f"<p class='note'>Bins of {fmt_num(step)} s. Outcomes: "
            + escape(", ".join(f"{k} {v}" for k, v in sorted(tp["outcomes"].items()))) + "; HTTP statuses: "
            + escape(", ".join(f"{k} {v}" for k, v in sorted(tp["statuses"].items()))) + ".</p>")


def _latency_html(lat: dict[str, Any]) -> str:
    if not lat:
        return "<p class='note'>No successful calls yet.</p>"
    parts = []
    for i, (model, m) in enumerate(lat.items()):
        edges = m["hist"]["edges_s"]
        parts.append(vbars(edges, [(model, [float(c) for c in m["hist"]["counts"]])], log_x=True, width=540,
                           height=220, title=f"{model}: latency of successful calls (n={m['n']:,})",
                           x_fmt=lambda s: f"{s * 1000:.3g} ms" if s < 1 else f"{s:.3g} s", y_label="calls",
                           colors=[("#4C78A8", "#F58518", "#54A24B", "#B279A2")[i % 4]],
                           markers=[("p50", m["p50_s"]), ("p99", m["p99_s"])], integer=True))
    table = _table(["model", "calls", "mean", "p50", "p90", "p99", "max"],
                   [[mo, m["n"], *(f"{m[k] * 1000:.1f} ms" for k in ("mean_s", "p50_s", "p90_s", "p99_s", "max_s"))]
                    for mo, m in lat.items()])
    return "<div class='grid'>" + "".join(parts) + "</div>" + table


def _votes_html(v: dict[str, Any]) -> str:
    if not v["voted"]:
        return "<p class='note'>No voted candidates yet.</p>"
    cols = ["#54A24B", "#E45756"]
    pct = lambda x: f"{x:.0%}"  # noqa: E731
    charts = [
        vbars(v["share_edges"], [("accepted", [float(x) for x in v["agree_share"]["accepted"]]),
                                 ("rejected", [float(x) for x in v["agree_share"]["rejected"]])],
              title="Share of votes agreeing with the candidate's answer", width=540, height=240, x_fmt=pct,
              colors=cols, y_label="candidates", integer=True),
        vbars(v["share_edges"], [("accepted", [float(x) for x in v["majority_share"]["accepted"]]),
                                 ("rejected", [float(x) for x in v["majority_share"]["rejected"]])],
              title="Majority answer's share of the votes", width=540, height=240, x_fmt=pct, colors=cols,
              y_label="candidates", integer=True),
    ]
    k = v["k"]
    if k:
        edges = [i + 0.5 for i in range(k + 1)]
        charts.append(vbars(edges, [("accepted", [float(x) for x in v["samples_hist"]["accepted"]]),
                                    ("rejected", [float(x) for x in v["samples_hist"]["rejected"]])],
                            title=f"Samples drawn before the decision (K = {k})", width=540, height=240,
                            x_fmt=lambda x: f"{x + 0.5:.0f}", colors=cols, y_label="candidates", integer=True))
    saved = 1 - v["samples_used"] / v["samples_full_vote"] if v["samples_full_vote"] else 0.0
    note = (f"<p class='note'>{v['voted']:,} candidates voted; {v['early_stopped']:,} stopped early; "
            f"{v['samples_used']:,} samples drawn of {v['samples_full_vote']:,} for full votes ({saved:.0%} saved).</p>")
    return "<div class='grid'>" + "".join(charts) + "</div>" + note


def _rip_html(rip: dict[str, Any]) -> str:
    if not rip["judged"]:
        return ""
    cols = ["#54A24B", "#E45756"]
    t = rip["thresholds"] or {}
    charts = []
    for metric, tkey, title in RIP_METRICS:
        m = rip["metrics"].get(metric)
        if m is None:
            continue
        charts.append(vbars(m["edges"], [("kept", [float(x) for x in m["accepted"]]),
                                         ("rejected", [float(x) for x in m["rejected"]])],
                            title=title.format(t=t.get(tkey)), width=540, height=240,
                            x_fmt=lambda x: f"{x:.3g}", colors=cols, y_label="prompts", integer=True))
    note = (f"<p class='note'>{rip['judged']:,} prompts scored; {rip['judge_failures']:,} judge replies had no "
            f"valid score. Thresholds were calibrated on the pilot and frozen (rip_thresholds.json).</p>")
    return "<h2>RIP: what the filter saw</h2><div class='grid'>" + "".join(charts) + "</div>" + note


def render_html(rep: dict[str, Any]) -> str:
    """The report page: headline cards, then one section per figure."""
    h, run = rep["headline"], rep["run"]
    per = h["cost_per_accepted_usd"]
    cards = "".join([
        _card(f"{h['accepted']:,} / {h['target']:,}", "accepted / target"),
        _card(fmt_usd(per) if per is not None else "-", "cost per accepted example"),
        _card(fmt_usd(h["cost_usd"]), "spent"),
        _card(f"{h['calls']:,}", "API calls (HTTP attempts)"),
        _card(f"{h['calls_per_s']:,.1f}/s", f"calls per second over {h['span_s']:.1f} s"),
        _card(f"{h['throttled_429']:,}", "429 responses"),
        _card(f"{rep['cost']['cache']['hit_share']:.0%}", "prompt tokens read from cache"),
    ])
    extra = ""
    if h["billing_unknown_requests"] or h["redone_usd"]:
        extra = (f"<p class='note'>Earlier sessions: {fmt_usd(h['redone_usd'])} spent on work redone after an "
                 f"interruption; {h['billing_unknown_requests']} requests cut off (billing unknown).</p>")
    models = ", ".join(f"{n} = {w}" for n, w in run["models"].items())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agen report {escape(run['fingerprint'])}</title>
<style>{_CSS}</style></head><body>
<h1>agen report</h1>
<div class="sub">{escape(run['dir'])} · run {escape(run['fingerprint'])} · {run['sessions']} session(s) · task {escape(run['task'])}
 · models: {escape(models)} · generated {escape(time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(run['generated_at'])))}</div>
<div class="cards">{cards}</div>{extra}
<h2>Acceptance funnel</h2>{_funnel_html(rep['funnel'])}
<h2>Cost per accepted example</h2>{_cost_html(rep['cost'])}
<h2>Throughput and rate limits over time</h2>{_throughput_html(rep['throughput'])}
<h2>Latency per model</h2>{_latency_html(rep['latency'])}
{_endpoints_html(rep.get('endpoints') or {})}
{"<h2>Vote margins</h2>" + _votes_html(rep['votes']) if rep['votes']['voted'] or not rep['rip']['judged'] else ""}
{_rip_html(rep['rip'])}
<p class="note">Figures are read from the run directory's shards and ledger (the same ones <code>agen status</code> reports);
the spend by token kind is priced with the current price table. Raw figures: report.json.</p>
</body></html>
"""


def write_report(root: Path) -> tuple[Path, Path]:
    """Write RUN_DIR/report.json and RUN_DIR/report.html (atomically); returns their paths."""
    root = Path(root)
    rep = build_report(root)
    json_path, html_path = root / "report.json", root / "report.html"
    atomic_write(json_path, orjson.dumps(rep, option=orjson.OPT_INDENT_2))
    atomic_write(html_path, render_html(rep).encode())
    return json_path, html_path
