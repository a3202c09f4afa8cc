"""What a sandboxed run of generated code costs (`verify: code`), against a bare interpreter start.

Runs a trivial passing solution N times, one at a time, three ways, in the same process and run:
  bare      `python -I -S -B -c pass` as an asyncio subprocess (the floor: interpreter start-up)
  hook      the sandbox with the layers every machine gets (rlimits, session, empty env, temp dir,
            audit hook)
  full      the sandbox as agen runs it here (plus network/PID namespaces and user nobody when
            root with unshare; the same as `hook` otherwise)
then the `full` sandbox N times with `parallel` = CPU count, for throughput. Prints a table of
ms per run and the ratio to `bare`, then one JSON line.

    python benchmarks/sandbox_cost.py            # N = 100
    python benchmarks/sandbox_cost.py --quick    # N = 5
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

from agen.verify.sandbox import Limits, Sandbox, isolation

CODE = "def f(x):\n    return x + 1\n"
TESTS = ["assert f(1) == 2", "assert f(41) == 42"]


async def _bare(n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        proc = await asyncio.create_subprocess_exec(sys.executable, "-I", "-S", "-B", "-c", "pass", env={})
        await proc.wait()
    return (time.perf_counter() - start) / n


async def _sandbox(n: int, namespaces: bool, parallel: int = 1) -> tuple[float, int]:
    sb = Sandbox(Limits(cpu_s=2, wall_s=10), parallel=parallel, namespaces=namespaces)
    start = time.perf_counter()
    results = await asyncio.gather(*(sb.run(CODE, TESTS) for _ in range(n)))
    return (time.perf_counter() - start) / n, sum(r.outcome == "pass" for r in results)


async def main(n: int) -> dict[str, object]:
    bare = await _bare(n)
    hook, hook_ok = await _sandbox(n, namespaces=False)
    full, full_ok = await _sandbox(n, namespaces=True)
    cpus = os.cpu_count() or 1
    par, par_ok = await _sandbox(n, namespaces=True, parallel=cpus)
    return {"n": n, "layers": list(isolation()), "bare_ms": round(bare * 1e3, 2), "hook_ms": round(hook * 1e3, 2),
            "full_ms": round(full * 1e3, 2), "hook_ratio": round(hook / bare, 2), "full_ratio": round(full / bare, 2),
            "parallel": cpus, "parallel_runs_per_s": round(1 / par, 1),
            "all_passed": hook_ok == n and full_ok == n and par_ok == n}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    doc = asyncio.run(main(5 if args.quick else args.n))
    print(f"sandbox cost per run, {doc['n']} sequential runs each (layers: {', '.join(doc['layers'])})")
    print(f"  {'bare interpreter':<28}{doc['bare_ms']:>9.1f} ms   1.00x")
    print(f"  {'sandbox, hook layers only':<28}{doc['hook_ms']:>9.1f} ms   {doc['hook_ratio']:.2f}x")
    print(f"  {'sandbox, as agen runs it':<28}{doc['full_ms']:>9.1f} ms   {doc['full_ratio']:.2f}x")
    print(f"  parallel={doc['parallel']}: {doc['parallel_runs_per_s']} runs/s")
    print(json.dumps(doc))
