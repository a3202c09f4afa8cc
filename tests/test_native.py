"""The compiled build (agen/native.py, setup.py): used only when it matches the sources, and it
decides exactly as the sources do.

The editable install compiles where it can (CI's machine has gcc), so the rest of the suite runs
the compiled modules; these tests hold the guard and the equivalence of the two builds."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import agen
import agen.gen.parse
from agen import native

PACKAGE = Path(agen.__file__).resolve().parent
BUILT = (PACKAGE / native.MANIFEST).exists()
built_only = pytest.mark.skipif(not BUILT, reason="no compiled build here (no C compiler, or AGEN_COMPILE=0)")


def _python(code: str, cwd: Path, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k not in ("AGEN_PURE", "PYTHONPATH")}
    res = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                         env=base | {"PYTHONPATH": str(cwd)} | env)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_status_tells_which_build_runs():
    compiled = native.is_compiled(agen.gen.parse)
    assert native.status().startswith("compiled" if compiled else "pure Python")
    if os.environ.get("AGEN_PURE"):
        assert not compiled
    elif BUILT and "changed since the build" not in native.status():
        assert compiled  # a build that matches its sources is the one imported


def _suspensions_in_cleanup(tree: ast.AST) -> list[int]:
    """Lines where a coroutine could suspend while an exception is in flight: an `await`, `async
    for` or `async with` inside an `except` or `finally` block, and every `async with` (its exit
    runs as such a block)."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.AsyncWith):
            lines.append(node.lineno)
        if isinstance(node, (ast.Try, ast.TryStar)):
            for block in [node.finalbody, *(h.body for h in node.handlers)]:
                lines += [n.lineno for s in block for n in ast.walk(s)
                          if isinstance(n, (ast.Await, ast.AsyncFor, ast.AsyncWith))]
    return lines


def test_no_compiled_coroutine_suspends_in_cleanup():
    """mypyc (2.4) drops an exception on its way out of a `try` when the `finally` awaits a future
    that then raises and is caught there (a cancelled task awaited in cleanup, say): the compiled
    coroutine returns normally; an `except` block that suspends the same way and re-raises ends in
    a SystemError. Both only when the await really suspends and uvloop (0.23, the run's loop)
    resumes it: asyncio's own loop keeps the exception. A compiled module's coroutines may await
    anywhere else (the request path's: http1, attempts, client, the vote's judge); cleanup that must wait for
    something stays in modules that are not compiled (the pipeline's stop, the sink's close)."""
    for name in native.COMPILED:
        tree = ast.parse(native.source_path(name, PACKAGE).read_text())
        assert not _suspensions_in_cleanup(tree), name


def test_the_cleanup_rule_sees_each_form():
    found = _suspensions_in_cleanup(ast.parse(
        "async def f(x):\n"
        "    try:\n        await x\n    finally:\n        await x\n"              # 5
        "    try:\n        pass\n    except E:\n        async for _ in x: pass\n"  # 9
        "    async with x: pass\n"                                                 # 10
        "    try:\n        await x\n    except E:\n        raise\n"))            # none
    assert sorted(found) == [5, 9, 10]


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "agen", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


PROBE = "import agen.gen.parse as p, agen.gen.dedup as d, agen.gen.dedup_store as s; from agen import native; " \
        "print(native.status()); print(p.__file__); print(d.__file__); " \
        "h = [d._c_signature, d._c_signature_text, s.KeyBuffer, s.sorted_gather, s._c_best_match]; " \
        "print('C helper' if all(h) else 'Python signature' if not any(h) else 'some C helpers')"


def test_an_edited_source_runs_as_source(tmp_path):
    """An editable checkout edited since its build runs the edited code, every compiled module
    from its source (they call each other directly: one stale module spoils the build)."""
    root = _copy(tmp_path)
    if not BUILT:  # the manifest of a build (without its compiled files): the edit alone decides
        (root / "agen" / native.MANIFEST).write_text(json.dumps(
            {f"agen.{m}": native.source_digest(native.source_path(m, root / "agen"))
             for m in native.COMPILED + native.C_HELPERS}))
    with open(root / "agen" / "gen" / "parse.py", "a") as f:
        f.write("\nEDITED = True\n")
    status, parse_file, dedup_file, signature = _python(PROBE + "; print(p.EDITED)", root).split("\n")[:4]
    assert status == "pure Python (agen/gen/parse.py changed since the build)"
    assert parse_file.endswith("parse.py") and dedup_file.endswith("dedup.py")
    assert signature == "Python signature"  # nor is the C helper of that build imported


def test_agen_pure_forces_the_sources(tmp_path):
    status, parse_file, _, signature = _python(PROBE, _copy(tmp_path), AGEN_PURE="1").split("\n")[:4]
    assert status == "pure Python (AGEN_PURE is set)" and parse_file.endswith(".py")
    assert signature == "Python signature"


@built_only
def test_a_matching_build_is_used(tmp_path):
    status, parse_file, dedup_file, signature = _python(PROBE, _copy(tmp_path)).split("\n")[:4]
    assert status.startswith("compiled (mypyc")
    assert not parse_file.endswith(".py") and not dedup_file.endswith(".py") and signature == "C helper"


# Every pure function of the per-candidate path over the repo's seed data, in one process per build.
EQUIVALENCE = r'''
import json, random, sys
from pathlib import Path
from agen import native
from agen.gen.answers import answer_key, group_answers
from agen.gen.dedup import Deduper
from agen.gen.parse import extract_boxed, strip_think
from agen.gen.solutions import keep_solutions, through_final_box
from agen.gen.vote import Tally, decide_full
rows = [json.loads(l) for f in sorted(Path(sys.argv[1]).glob("*.jsonl")) for l in open(f) if l.strip()]
texts = [str(v) for r in rows for v in r.values() if isinstance(v, (str, int, float))]
rng = random.Random(0)
out = {"status": native.status(), "boxed": [], "keys": [], "dedup": [], "votes": []}
for t in texts:
    out["boxed"].append([extract_boxed(t), through_final_box(t), strip_think(t)])
    out["keys"].append(repr(answer_key(t[:60])))
words = [w for t in texts for w in t.split()][:20000]
d = Deduper()
for i, t in enumerate(texts[:1500]):
    edited = " ".join(w if rng.random() > 0.15 else rng.choice(words) for w in t.split())
    for j, q in enumerate((t, edited)):
        m = d.check_and_add(q, f"{i}-{j}")
        out["dedup"].append(None if m is None else [m.kind, m.match_id, m.score])
answers = ["42", "42.0", "\\frac{84}{2}", "41", "x+1", "1+x", "\\sqrt{2}", "yes", "True", None, "50\\%", "0.5"]
for k in range(300):
    picked = [rng.choice(answers) for _ in range(rng.randint(1, 9))]
    tally = Tally(picked[0] or "42", 8, 0.5)
    for a in picked:
        if tally.decision() is not None or tally.remaining <= 0:
            break
        tally.add(a)
    dec = tally.decision()
    out["votes"].append([repr(group_answers(picked)), None if dec is None else [dec.accepted, dec.reason, dec.agree],
                         keep_solutions([f"Step {a}. \\boxed{{{a}}} then" for a in picked if a])])
print(json.dumps(out))
'''


@built_only
def test_compiled_and_sources_decide_alike(tmp_path):
    data = PACKAGE.parent / "data"
    script = tmp_path / "probe.py"
    script.write_text(EQUIVALENCE)
    cwd = PACKAGE.parent
    runs = [json.loads(_python(f"import runpy, sys; sys.argv = ['probe', {str(data)!r}]; runpy.run_path({str(script)!r})",
                               cwd, **env)) for env in ({}, {"AGEN_PURE": "1"})]
    compiled, pure = runs
    assert compiled.pop("status").startswith("compiled") and pure.pop("status").startswith("pure Python")
    assert len(compiled["dedup"]) == 3000 and any(compiled["dedup"]) and len(compiled["votes"]) == 300
    assert compiled == pure
