"""`python -m agen.sim --config PATH --host H --port P`: run the simulated provider until signalled."""

from __future__ import annotations

import argparse

from agen.sim.server import serve


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m agen.sim", description="Run agen's simulated LLM provider.")
    parser.add_argument("--config", default=None, help="sim YAML (default: configs/sim_models.yaml)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--parent-pid", type=int, default=None, help="exit when this process is gone")
    parser.add_argument("--no-pdeathsig", action="store_true", help="watch --parent-pid only (no prctl)")
    args = parser.parse_args(argv)
    if args.parent_pid is not None:
        from agen.sim.process import die_with_parent

        die_with_parent(args.parent_pid, pdeathsig=not args.no_pdeathsig)
    serve(args.config, args.host, args.port)


if __name__ == "__main__":
    main()
