"""The end-of-run summary: the acceptance funnel per stage and the cost per accepted example."""

from __future__ import annotations

import textwrap
from typing import Any

# (reason prefixes, column): a filter verdict is "vote:..." (Answer-Consistency) or "rip:..." (RIP).
FUNNEL = ((("parse:",), "parse failed"), (("duplicate:",), "duplicate"), (("generate_failed",), "gen failed"),
          (("vote:", "rip:"), "filtered"), (("filter_failed", "vote_failed"), "filter failed"),
          (("surplus:",), "surplus"))


def _usd(x: float) -> str:
    return f"${x:.6f}" if x < 1 else f"${x:,.2f}"


def funnel_rows(stages: dict[str, Any]) -> list[dict[str, Any]]:
    """Per stage: candidates finished, and how many ended at each gate."""
    rows = []
    for name, s in stages.items():
        reasons: dict[str, int] = s["reasons"]
        row = {"stage": name, "finished": s["finished"], "accepted": s["accepted"], "target": s["target"]}
        for prefixes, label in FUNNEL:
            row[label] = sum(n for r, n in reasons.items() if r.startswith(prefixes))
        row["filter rejected"] = row["filtered"] - s["accepted"]
        rows.append(row)
    return rows


def cost_rows(snap: dict[str, Any]) -> list[tuple[str, float, int, float | None]]:
    """(stage, generation+vote cost, accepted, cost per accepted) for each stage, then the total."""
    by_stage = snap["costs"]["by_stage"]
    out: list[tuple[str, float, int, float | None]] = []
    for name, s in snap["stages"].items():
        # the stage's generation ("amplify") and its filter's calls ("amplify.vote", ".respond", ".judge")
        usd = sum(t["cost_usd"] for key, t in by_stage.items() if key == name or key.startswith(name + "."))
        out.append((name, usd, s["accepted"], usd / s["accepted"] if s["accepted"] else None))
    total = snap["costs"]["total"]["cost_usd"]
    accepted = sum(s["accepted"] for s in snap["stages"].values())
    out.append(("all", total, accepted, total / accepted if accepted else None))
    return out


def cache_figures(costs: dict[str, Any]) -> dict[str, Any]:
    """Prompt-cache hit share (cached prompt tokens / all prompt tokens) and USD saved against no
    caching, net of cache-write premiums: in total, per stage and per model."""
    def one(t: dict[str, Any]) -> dict[str, Any]:
        return {"hit_share": t.get("cache_hit_share", 0.0), "saved_usd": t.get("cache_saved_usd", 0.0),
                **{k: t.get(k, 0) for k in ("input_tokens", "cached_input_tokens", "cache_write_tokens")}}
    return {**one(costs["total"]), "by_stage": {k: one(t) for k, t in costs.get("by_stage", {}).items()},
            "by_model": {k: one(t) for k, t in costs.get("by_model", {}).items()}}


def cache_lines(costs: dict[str, Any]) -> list[str]:
    """'Prompt cache: 41% of prompt tokens cached, $0.0123 saved (net of writes); per stage ...'."""
    fig = cache_figures(costs)
    if not fig["input_tokens"]:
        return []
    stages = ", ".join(f"{k} {v['hit_share']:.0%}" for k, v in fig["by_stage"].items() if v["input_tokens"])
    text = (f"Prompt cache: {fig['hit_share']:.0%} of prompt tokens read from cache, {_usd(fig['saved_usd'])} "
            f"saved vs no caching (net of cache writes); by stage: {stages}")
    return textwrap.wrap(text, WIDTH)


WIDTH = 80  # the summary fits a default terminal


def truncation_hints(stages: dict[str, Any]) -> list[str]:
    """One line per stage whose generations were cut at max_tokens (rejected as parse:truncated)."""
    out = []
    for name, s in stages.items():
        cut = s["reasons"].get("parse:truncated", 0)
        if cut and s["finished"]:
            out.append(f"  {100 * cut / s['finished']:.0f}% of {name} outputs hit max_tokens="
                       f"{s.get('max_tokens', '?')} — raise it")
    return ["", "Truncated generations"] + out if out else []


def endpoint_lines(endpoints: dict[str, Any]) -> list[str]:
    """What each endpoint was learned (or stated) to do: `n`, TPM charging, windows, headers."""
    rows = []
    for lane, f in endpoints.items():
        src = f.get("source", {})
        parts = [f"{k}={v if not isinstance(v, list) else ','.join(v)}"
                 + (" (config)" if src.get(k) == "config" else "")
                 for k, v in f.items() if k != "source"]
        if parts:
            rows += textwrap.wrap(f"{lane}: " + "  ".join(parts), WIDTH, initial_indent="  ",
                                  subsequent_indent="      ")
    return ["", "Endpoints (learned from responses unless marked config)"] + rows if rows else []


def batch_lines(stats: dict[str, Any]) -> list[str]:
    """What each model sent through its provider's batch API this session (`mode: batch`)."""
    rows = []
    for key in stats:
        if not key.endswith("/batch/batches"):
            continue
        m = key[:-len("/batch/batches")]
        b = {k: stats.get(f"{m}/batch/{k}", 0) for k in ("batches", "lines", "lines_failed", "lines_retried",
                                                          "recovered", "answered_from_kept", "queue_full")}
        if any(b.values()):
            full = (f"; the provider's batch queue was full {b['queue_full']} time(s): those lines waited for room "
                    "(not billed, not counted as failed)" if b["queue_full"] else "")
            rows += textwrap.wrap(f"{m}: {b['batches']} batches submitted, {b['lines']} lines ({b['lines_failed']} "
                                  f"failed, {b['lines_retried']} retried); {b['recovered']} earlier sessions' batches "
                                  f"followed, {b['answered_from_kept']} requests answered from kept results{full}",
                                  WIDTH, initial_indent="  ", subsequent_indent="      ")
    return ["", "Batches (mode: batch; lines billed at the batch price)"] + rows if rows else []


def render_summary(snap: dict[str, Any]) -> str:
    """The human summary: funnel (one column per stage), cost per accepted, calls per stage/model."""
    head = (f"agen summary — run {snap.get('fingerprint', '?')}, session {snap.get('session', 0)}"
            + (f", {snap['elapsed_s']:.1f}s" if "elapsed_s" in snap else "")
            + (f", stopped: {snap['stop_reason']}" if snap.get("stop_reason") else ""))
    lines = textwrap.wrap(head, WIDTH) + [""]
    rows = funnel_rows(snap["stages"])
    labels = ["finished", *(label for _, label in FUNNEL), "filter rejected"]
    lines.append(f"{'Acceptance funnel':<20}" + "".join(f"{r['stage']:>12}" for r in rows))
    for label in labels:
        lines.append(f"  {label:<18}" + "".join(f"{r[label]:>12}" for r in rows))
    lines.append(f"  {'accepted / target':<18}" + "".join(f"{str(r['accepted']) + '/' + str(r['target']):>12}"
                                                      for r in rows))
    lines.append("")
    lines.append("Cost per accepted example (generation + its filter; 'all': every call)")
    for name, usd, acc, per in cost_rows(snap):
        lines.append(f"  {name:>8}  {_usd(usd):>12} for {acc:>6} accepted  →  "
                     f"{_usd(per) if per is not None else '-':>12} each")
    lines.append("")
    lines.append(f"{'By stage and model':<24}{'calls':>8}{'in':>11}{'cached':>10}{'out':>11}{'USD':>12}")
    for key, t in snap["costs"]["by_stage_model"].items():
        if len(key) > 21:  # a long stage/model name gets a line of its own, not a cut
            lines.append(f"  {key[:WIDTH - 2]}")
            key = ""
        lines.append(f"  {key:<22}{t['calls']:>8}{t['input_tokens']:>11}{t['cached_input_tokens']:>10}"
                     f"{t['output_tokens']:>11}{_usd(t['cost_usd']):>12}")
    lines.extend(cache_lines(snap["costs"]))
    rep = snap.get("replayed") or {}
    if "redone_usd" in snap and (snap.get("session") or snap["redone_usd"] or rep.get("requests")):  # not on a first session
        lines.append("")
        lines += textwrap.wrap(f"$ redone: {_usd(snap['redone_usd'])} (paid again for requests an earlier session "
                               f"paid for); {rep.get('requests', 0)} paid results replayed from the journal "
                               f"({_usd(rep.get('usd', 0.0))})", WIDTH)
    fs = snap.get("fewshot")
    if fs and fs["tasks"]:
        lines.append("")
        # counted by this session only; report.json's figure is over the whole run's records
        scope = "this session's first" if snap.get("session") else "the first"
        lines += textwrap.wrap(f"Amplify few-shots: {scope} {fs['tasks']} tasks showed {fs['distinct']} "
                               f"distinct proposals (of {fs['pool']} accepted); the top 3 took "
                               f"{fs['top3_share']:.0%} of {fs['slots']} slots", WIDTH)
    if lag := snap.get("loop_lag"):
        lines.append(f"Event-loop lag: p50 {lag['p50_ms']:.1f} ms, p99 {lag['p99_ms']:.1f} ms, max {lag['max_ms']:.1f} ms"
                     f" ({lag['stalls']} stalls over {lag['stall_threshold_ms']} ms)")
        if "own_max_ms" in lag:  # the rest of a lag is other processes holding the cores
            lines.append(f"  of which this process's own work at most {lag['own_max_ms']:.1f} ms; "
                         f"GC pauses max {lag['gc_max_ms']:.1f} ms")
    lines.extend(truncation_hints(snap["stages"]))
    lines.extend(batch_lines(snap.get("providers") or {}))
    lines.extend(endpoint_lines(snap.get("endpoints") or {}))
    prev = snap.get("previous_sessions")
    if prev and (prev["billing_unknown_requests"] or prev["redone_usd"]):
        lines.append("")
        lines.append(f"Earlier sessions: {_usd(prev['redone_usd'])} spent on work redone after an interruption;")
        lines.append(f"  {prev['billing_unknown_requests']} requests cut off (billing unknown)")
    return "\n".join(lines)
