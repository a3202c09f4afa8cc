"""`agen export`: turn a run's accepted records into training files, with a dataset card.

`sft`: prompt/response pairs — a verifiable example's question with its shortest agreeing
solution (ending in `\\boxed{answer}`; a bare `\\boxed{answer}` for records made before solutions
were kept), or an open-ended prompt with its best-rewarded response.
`rl`: verifiable problems for RL with a verifier (question, answer, pass rate over the samples
drawn, K, domain, stage; code adds its `tests`), as GRPO-style training wants them.
`dpo`: RIP's by-product — for each accepted open-ended prompt, its best- and worst-rewarded
responses as a chosen/rejected pair (prompt, chosen, rejected), as the RIP paper does.

`--min-pass-rate/--max-pass-rate` keep verifiable problems that are neither trivial nor hopeless
(records without a pass rate are dropped when either is set). Output is JSONL, or Parquet when
the path ends in `.parquet` (needs pyarrow: `pip install 'agen[parquet]'`). A dataset card
(`README.md`: counts, models, cost, filters, seed licence) is written beside the file unless a
README.md that agen did not write is already there.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import orjson

from agen import yaml_text
from agen.errors import ConfigError, StorageError
from agen.gen.rip_metrics import preference_pair
from agen.run.shards import read_records

FORMATS = ("dpo", "sft", "rl")
CARD_MARK = "<!-- written by agen export -->"


@dataclass(frozen=True, slots=True)
class PassRange:
    """Keep verifiable records whose pass rate is within [low, high]; None = no bound."""

    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ConfigError(f"--min-pass-rate {self.low} is above --max-pass-rate {self.high}: nothing to keep")

    def keeps(self, r: dict[str, Any]) -> bool:
        if self.low is None and self.high is None:
            return True
        rate = (r.get("vote") or {}).get("pass_rate")
        if rate is None:
            return False
        return (self.low is None or rate >= self.low) and (self.high is None or rate <= self.high)


def _best(rip: dict[str, Any]) -> str | None:
    scored = [(r, i) for i, r in enumerate(rip["rewards"]) if r is not None]
    if not scored:
        return None
    return rip["responses"][max(scored, key=lambda ri: (ri[0], -ri[1]))[1]]


def _row(r: dict[str, Any], fmt: str) -> dict[str, Any] | None:
    rip, vote = r.get("rip"), r.get("vote")
    if fmt == "dpo":
        pair = preference_pair(rip["responses"], rip["rewards"]) if rip is not None else None
        if pair is None:
            return None
        return {"id": r["id"], "prompt": r["question"], "chosen": pair[0], "rejected": pair[1]}
    if fmt == "sft":
        if rip is not None:
            response = _best(rip)
        else:
            solutions = (vote or {}).get("solutions") or []
            if solutions or not r.get("answer"):
                response = solutions[0] if solutions else None
            else:  # code's answer is its reference solution, not a boxed value
                response = r["answer"] if r.get("domain") == "code" else f"\\boxed{{{r['answer']}}}"
        return None if response is None else {"id": r["id"], "prompt": r["question"], "response": response}
    if vote is None:  # rl: verifiable problems only
        return None
    row = {"id": r["id"], "question": r["question"], "answer": r["answer"],
           "pass_rate": vote.get("pass_rate", vote["agree"] / vote["samples"] if vote.get("samples") else None),
           "k": vote["k"], "samples": vote["samples"], "domain": r.get("domain") or "math",
           "stage": r["stage"]}
    if r.get("tests"):  # code: what a trainer's verifier runs the policy's solutions against
        row["tests"] = r["tests"]
    return row


def export_rows(run_dir: Path, fmt: str, pass_range: PassRange = PassRange()) -> Iterator[dict[str, Any]]:
    """The rows of `fmt` from RUN_DIR's accepted records, in shard order."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    if not (run_dir / "run.json").exists():
        raise ConfigError(f"{run_dir}: not an agen run directory (no run.json)")
    folder = run_dir / "accepted"
    if not folder.exists():
        return
    for r in read_records(folder):
        if pass_range.keeps(r):
            row = _row(r, fmt)
            if row is not None:
                yield row


def default_format(run_dir: Path) -> str:
    """dpo for an open-ended run (RIP's preference pairs), sft otherwise (a math run has no pairs)."""
    try:
        task = (yaml_text.load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}).get("task")
    except OSError:
        raise ConfigError(f"{run_dir}: not an agen run directory (no config.yaml)") from None
    return "dpo" if task == "open_ended" else "sft"


def _write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ConfigError(f"{path}: Parquet output needs pyarrow (pip install 'agen[parquet]'); "
                          f"or write .jsonl") from None
    pq.write_table(pa.Table.from_pylist(rows), path)


def export(run_dir: Path, fmt: str, out: Path, pass_range: PassRange = PassRange(),
           card: bool = True) -> int:
    """Write `out` (JSONL, or Parquet for `.parquet`) through a temp file renamed into place, and
    the dataset card beside it. Returns rows written."""
    rows = export_rows(run_dir, fmt, pass_range)
    tmp = out.with_name(out.name + ".tmp")
    n = 0
    try:
        if out.suffix == ".parquet":
            kept = list(rows)
            n = len(kept)
            _write_parquet(kept, tmp)
        else:
            with open(tmp, "wb") as f:
                for row in rows:
                    f.write(orjson.dumps(row) + b"\n")
                    n += 1
        if n == 0:
            accepted = sum(1 for _ in read_records(run_dir / "accepted")) if (run_dir / "accepted").exists() else 0
            why = ("it has no accepted records yet (see `agen status`)" if accepted == 0 else
                   f"none of its {accepted} accepted records has what {fmt!r} needs"
                   + (" (dpo pairs come from open-ended runs; try --format sft)" if fmt == "dpo" else "")
                   + ("" if pass_range == PassRange() else " within the pass-rate range"))
            raise ConfigError(f"{run_dir}: nothing to export as {fmt}: {why}")
        tmp.replace(out)
        if card:
            _write_card(run_dir, fmt, out, n, pass_range)
    except OSError as exc:
        raise StorageError(f"writing {out} failed: {exc.strerror}", str(out)) from None
    finally:
        tmp.unlink(missing_ok=True)
    return n


def _write_card(run_dir: Path, fmt: str, out: Path, rows: int, pass_range: PassRange) -> None:
    from agen.app.dataset_card import render_card  # the card reads the whole run: only when asked

    path = out.parent / "README.md"
    if path.exists() and CARD_MARK not in path.read_text(encoding="utf-8", errors="replace"):
        return  # someone else's README: leave it alone
    text = render_card(run_dir, fmt, out.name, rows, pass_range.low, pass_range.high)
    path.write_text(text + "\n" + CARD_MARK + "\n", encoding="utf-8")
