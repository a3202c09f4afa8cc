"""The `agen` command: run, resume, status, report, export, merge, init and sim.

Exit codes (README): 0 every target met or the budget reached, 2 bad input or environment, 3 fatal
provider error, 4 storage error, 5 no progress, 6 endpoint unreachable, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from agen import native
from agen.app.logs import configure_logging
from agen.config import BUILTIN_CONFIGS, builtin_config, k_key, load_config
from agen.errors import AgenError, StorageError
from agen.version import agen_version


def _version() -> str:
    return agen_version() or "unknown"  # unknown: a bare checkout on sys.path


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(_version(), "--version", prog_name="agen", message=f"%(prog)s %(version)s, {native.status()}")
def cli() -> None:
    """agen: propose-and-amplify verified training examples with CoT-Self-Instruct."""


@contextlib.contextmanager
def _input_errors() -> Iterator[None]:
    """An AgenError raised before or outside a run is one line on stderr and exit 2 (bad input), or
    4 for a StorageError (a file that cannot be read or written: the README's table)."""
    try:
        yield
    except AgenError as exc:
        click.echo(f"agen: {exc}", file=sys.stderr)
        sys.exit(4 if isinstance(exc, StorageError) else 2)


def _config_path(config: str) -> Path:
    """A config file, or the name of a built-in one (`quickstart`, `open_ended`)."""
    path = Path(config)
    if path.is_file():
        return path
    if (builtin := builtin_config(config)) is not None:  # also when ./NAME is a folder (e.g. runs/)
        return builtin
    if path.exists():
        raise AgenError(f"{config}: not a config file (a folder)")
    raise AgenError(f"{config}: no such config file (built-in configs: {', '.join(BUILTIN_CONFIGS)})")


def _finish(outcome) -> None:
    stream = sys.stderr if outcome.exit_code else sys.stdout
    click.echo(f"agen: {outcome.message}", file=stream)
    sys.exit(outcome.exit_code)


LOG_FILE = click.option("--log-file", type=click.Path(dir_okay=False, path_type=Path),
                        help="Append the JSON log lines to this file instead of stderr.")
NO_PREFLIGHT = click.option("--no-preflight", is_flag=True,
                            help="Skip the one request per endpoint made before any work (for pay-per-request endpoints).")


@cli.command(help="Run CONFIG (or resume it, if its output directory holds the same run). CONFIG is a YAML "
                  "file or the name of a built-in config: " + ", ".join(BUILTIN_CONFIGS) + ".")
@click.argument("config")
@click.option("--out", help="Run directory (overrides output.dir).")
@click.option("--target", type=int, help="Accepted amplified examples wanted (amplify.target).")
@click.option("--proposals", type=int, help="Accepted proposals wanted (propose.target).")
@click.option("--budget-usd", type=float, help="Stop cleanly once this much has been spent.")
@click.option("--k", "k", type=int, help="Samples per candidate: vote.k, or rip.k for an open-ended config.")
@click.option("--grace", type=float, default=30.0, show_default=True,
              help="Seconds in-flight work may take to finish after the first Ctrl-C.")
@click.option("--coordinator", help="redis://HOST:PORT/DB: split this run over many workers (coordinator.url); "
                                     "--out is then the run root, this worker writes RUN_ROOT/workers/ID.")
@click.option("--worker-id", help="This worker's name in a coordinated run (coordinator.worker_id).")
@NO_PREFLIGHT
@LOG_FILE
def run(config: str, out: str | None, target: int | None, proposals: int | None,
        budget_usd: float | None, k: int | None, grace: float, coordinator: str | None, worker_id: str | None,
        no_preflight: bool, log_file: Path | None) -> None:
    from agen.app.runner import run_session

    overrides = {"output.dir": out, "amplify.target": target, "propose.target": proposals,
                 "budget.usd": budget_usd, "coordinator.url": coordinator, "coordinator.worker_id": worker_id}
    with _input_errors():
        path = _config_path(config)
        if k is not None:
            overrides[k_key(path)] = k
        cfg = load_config(path, overrides)
        configure_logging(cfg.log_level, file=log_file)
    _finish(run_session(cfg, config_dir=path.parent, grace_s=grace, probe=not no_preflight))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--budget-usd", type=float, help="A new spending limit for the whole run.")
@click.option("--grace", type=float, default=30.0, show_default=True,
              help="Seconds in-flight work may take to finish after the first Ctrl-C.")
@click.option("--coordinator", help="A coordinated run's worker: the Redis to use now (coordinator.url), if it moved.")
@NO_PREFLIGHT
@LOG_FILE
def resume(run_dir: Path, budget_usd: float | None, grace: float, coordinator: str | None, no_preflight: bool,
           log_file: Path | None) -> None:
    """Resume RUN_DIR with the config of its latest session (relative paths resolve from that config's folder).
    A coordinated run's worker resumes as `agen resume RUN_ROOT/workers/W`."""
    from agen.app.runner import run_session
    from agen.run.rundir import run_config_dir

    with _input_errors():
        cfg = load_config(run_dir / "config.yaml", {"budget.usd": budget_usd, "output.dir": str(run_dir),
                                                    "coordinator.url": coordinator})
        config_dir = run_config_dir(run_dir)
        configure_logging(cfg.log_level, file=log_file)
    _finish(run_session(cfg, config_dir=config_dir, grace_s=grace, probe=not no_preflight))


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def status(run_dir: Path) -> None:
    """Progress, spend and what is left in RUN_DIR, read from its data files."""
    from agen.app.status import run_status

    with _input_errors():
        click.echo(run_status(run_dir))


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Simulated models YAML.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=int, help="Port to listen on (0: a free one).")
def sim(config_path: str | None, host: str, port: int) -> None:
    """Serve the simulated provider (OpenAI and Anthropic wire formats) until interrupted."""
    from agen.sim.server import serve

    serve(config_path, host, port)


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
def report(run_dir: Path) -> None:
    """Write RUN_DIR/report.html (charts, no network needed) and RUN_DIR/report.json."""
    from agen.app.report import write_report

    from agen.app.merge import readable_run

    with _input_errors():
        json_path, html_path = write_report(readable_run(run_dir))
    click.echo(f"agen: wrote {html_path} and {json_path}")


@cli.command()
@click.argument("run_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["dpo", "sft", "rl"]), default=None,
              help="dpo: best-vs-worst response pairs of accepted open-ended prompts; sft: prompt and full "
                   "solution (or best response); rl: question, answer, pass rate, domain. "
                   "Default: dpo for an open-ended run, sft otherwise.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Default: RUN_DIR/export-FORMAT.jsonl; a .parquet path writes Parquet.")
@click.option("--min-pass-rate", type=click.FloatRange(0, 1), help="Keep problems solved at least this often.")
@click.option("--max-pass-rate", type=click.FloatRange(0, 1), help="Keep problems solved at most this often.")
@click.option("--no-card", is_flag=True, help="Do not write the dataset card (README.md beside the file).")
def export(run_dir: Path, fmt: str | None, out: Path | None, min_pass_rate: float | None,
           max_pass_rate: float | None, no_card: bool) -> None:
    """Write training files from RUN_DIR's accepted records, and a dataset card beside them."""
    from agen.app.export import PassRange, default_format
    from agen.app.export import export as do_export

    from agen.app.merge import readable_run

    with _input_errors():
        run_dir = readable_run(run_dir)
        fmt = fmt or default_format(run_dir)
        target = out or run_dir / f"export-{fmt}.jsonl"
        n = do_export(run_dir, fmt, target, PassRange(min_pass_rate, max_pass_rate), card=not no_card)
    click.echo(f"agen: wrote {n} {fmt} rows to {target}")


@cli.command()
@click.argument("run_root", type=click.Path(file_okay=False, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="The merged run directory to write (replaced if an earlier merge wrote it).")
def merge(run_root: Path, out: Path) -> None:
    """One deduplicated run directory from a coordinated run's workers (RUN_ROOT/workers/*)."""
    from agen.app.merge import merge_run

    with _input_errors():
        res = merge_run(run_root, out)
    accepted = ", ".join(f"{s} {n}" for s, n in sorted(res.accepted.items())) or "none"
    click.echo(f"agen: merged {len(res.workers)} workers into {out}: accepted {accepted}; moved to rejected as "
               f"duplicates across workers: {res.near_duplicates} near, {res.exact_duplicates} exact"
               + (f"; {res.repeated_ids} ids found twice, kept once" if res.repeated_ids else ""))


@cli.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--from", "base", type=click.Choice(BUILTIN_CONFIGS), default="quickstart", show_default=True,
              help="The built-in config to start from.")
def init(directory: Path, base: str) -> None:
    """Write an editable starter config into DIRECTORY: config.yaml, its templates and its seeds."""
    from agen.app.init import write_starter

    with _input_errors():
        path = write_starter(directory, base)
    click.echo(f"agen: wrote {path}; edit it, then `agen run {path}`")


def main() -> None:
    try:
        cli(prog_name="agen", standalone_mode=False)
    except click.exceptions.Abort:  # Ctrl-C before the run's own handlers are installed
        click.echo("agen: interrupted during start-up; nothing was sent", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
