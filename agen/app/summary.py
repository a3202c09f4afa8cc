"""The end-of-run summary: the acceptance funnel per stage and the cost per accepted example."""

from __future__ import annotations

from typing import Any

# (reason prefixes, column): a filter verdict is "vote:..." (Answer-Consistency) or "rip:..." (RIP).
FUNNEL = ((("parse:",), "parse failed"), (("duplicate:",), "duplicate"), (("generate_failed",), "gen failed"),
          (("vote:", "rip:"), "filtered"), (("filter_failed", "vote_failed"), "filter failed"))


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


def render_summary(snap: dict[str, Any]) -> str:
    lines = [f"agen summary — run {snap.get('fingerprint', '?')}, session {snap.get('session', 0)}"
             + (f", {snap['elapsed_s']:.1f}s" if "elapsed_s" in snap else "")
             + (f", stopped: {snap['stop_reason']}" if snap.get("stop_reason") else "")]
    lines.append("")
    lines.append("Acceptance funnel")
    head = ("stage", "finished", "parse failed", "duplicate", "gen failed", "filtered", "filter rejected",
            "filter failed", "accepted", "target")
    lines.append("  " + "  ".join(f"{h:>13}" for h in head))
    for row in funnel_rows(snap["stages"]):
        lines.append("  " + "  ".join(f"{row[h]!s:>13}" for h in head))
    lines.append("")
    lines.append("Cost per accepted example (generation + its filter; 'all' includes every call)")
    for name, usd, acc, per in cost_rows(snap):
        lines.append(f"  {name:>8}  {_usd(usd):>12} for {acc:>6} accepted  →  "
                     f"{_usd(per) if per is not None else '-':>12} each")
    lines.append("")
    lines.append("By stage and model")
    for key, t in snap["costs"]["by_stage_model"].items():
        lines.append(f"  {key:<28} {t['calls']:>7} calls  in {t['input_tokens']:>10} "
                     f"(cached {t['cached_input_tokens']})  out {t['output_tokens']:>10}  {_usd(t['cost_usd']):>12}")
    fs = snap.get("fewshot")
    if fs and fs["tasks"]:
        lines.append("")
        lines.append(f"Amplify few-shots: the first {fs['tasks']} tasks showed {fs['distinct']} distinct "
                     f"proposals (of {fs['pool']} accepted); the top 3 took {fs['top3_share']:.0%} of "
                     f"{fs['slots']} slots")
    prev = snap.get("previous_sessions")
    if prev and (prev["billing_unknown_requests"] or prev["redone_usd"]):
        lines.append("")
        lines.append(f"Earlier sessions: {_usd(prev['redone_usd'])} spent on work redone after an "
                     f"interruption; {prev['billing_unknown_requests']} requests cut off (billing unknown)")
    return "\n".join(lines)
