"""The command line: --version, help on every option, export's default format, init, built-in names."""

from __future__ import annotations

from pathlib import Path

import click
import yaml
from click.testing import CliRunner

from agen.app.cli import cli
from agen.app.runner import EXIT_OK, run_session
from agen.config import load_config, parse_config
from agen import native
from conftest import quick_raw, sim_config_file


def test_version():
    res = CliRunner().invoke(cli, ["--version"])
    assert res.exit_code == 0 and res.output.startswith("agen ") and res.output.split()[1][0].isdigit()
    assert native.status() in res.output  # which build runs: compiled, or pure Python and why


def test_every_option_has_help_text():
    missing = [f"{name} {p.opts[0]}" for name, cmd in cli.commands.items() for p in cmd.params
               if isinstance(p, click.Option) and not p.help]
    assert missing == []


def test_export_without_format_picks_sft_for_a_math_run_or_says_why_not(tmp_path):
    sim = str(sim_config_file(tmp_path, latency_ms=2))
    raw = quick_raw(tmp_path, proposals=2, target=3, simulator={"config": sim})
    assert run_session(parse_config(raw), live=False).exit_code == EXIT_OK
    run = tmp_path / "run"
    res = CliRunner().invoke(cli, ["export", str(run)])
    assert res.exit_code == 0, res.output
    assert "wrote 5 sft rows" in res.output and (run / "export-sft.jsonl").exists()
    res = CliRunner().invoke(cli, ["export", str(run), "--format", "dpo"])
    assert res.exit_code != 0 and "nothing to export as dpo" in res.output and "--format sft" in res.output
    assert not (run / "export-dpo.jsonl").exists()


def test_init_writes_a_starter_whose_templates_and_seeds_are_next_to_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["init", "mine"])
    assert res.exit_code == 0, res.output
    cfg_path = tmp_path / "mine" / "config.yaml"
    raw = yaml.safe_load(cfg_path.read_text())
    assert raw["propose"]["template"] == "templates/verifiable_generate.txt"
    assert (tmp_path / "mine" / "templates" / "verifiable_solve.txt").exists()
    assert (tmp_path / "mine" / raw["seeds"]["path"]).exists()
    from agen.app.dataset_card import seed_licence

    ident, text = seed_licence(tmp_path / "mine" / raw["seeds"]["path"])  # the card's licence comes along
    assert ident != "unknown" and [p.name for p in (tmp_path / "mine").glob("*LICENSE*")] == [text.split("`")[1]]
    (tmp_path / "mine" / "templates" / "verifiable_solve.txt").write_text("Mine: {question}\n")
    cfg = load_config(cfg_path)
    from agen.app.runner import preflight
    from agen.gen.prompts import solve_prompt, template_path

    preflight(cfg, cfg_path.parent)
    assert template_path(cfg.vote.template) == tmp_path / "mine" / "templates" / "verifiable_solve.txt"
    assert solve_prompt(cfg.vote.template, "2+2?") == "Mine: 2+2?\n"
    again = CliRunner().invoke(cli, ["init", "mine"])
    assert again.exit_code == 2 and "already exists" in again.output


def test_a_builtin_config_is_found_by_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["run", "quickstart", "--out", str(tmp_path / "q"), "--proposals", "1",
                                   "--target", "2"])
    assert res.exit_code == 0, res.output
    assert "done: every target met" in res.output
    assert Path(tmp_path / "q" / "accepted").is_dir()


def test_log_file_keeps_json_lines_away_from_the_summary_and_the_terminal(tmp_path):
    import json
    import subprocess
    import sys

    from conftest import ROOT

    log = tmp_path / "agen.jsonl"
    res = subprocess.run([sys.executable, "-m", "agen", "run", "quickstart", "--out", str(tmp_path / "q"),
                          "--proposals", "1", "--target", "2", "--log-file", str(log)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""  # every log line went to the file
    out = res.stdout.splitlines()
    assert out[0].startswith("agen summary") and out[-1].startswith("agen: done")
    assert not [ln for ln in out if ln.startswith("{")]
    again = subprocess.run([sys.executable, "-m", "agen", "resume", str(tmp_path / "q"), "--log-file", str(log)],
                           cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stderr == "", again.stderr
    events = [json.loads(ln) for ln in log.read_text().splitlines()]
    assert "resuming" in {e["event"] for e in events} and all(e["level"] for e in events)


def test_an_unknown_config_name_lists_the_built_in_ones(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["run", "quickstrt"])
    assert res.exit_code == 2 and "built-in configs: quickstart, open_ended" in res.output


def test_cli_k_sets_the_filters_sample_count_for_the_configs_task():
    """`--k` is vote.k for a verifiable config and rip.k for an open-ended one (as `agen.run`'s k=)."""
    from agen.config import k_key as _k_key

    configs = Path(__file__).resolve().parent.parent / "configs"
    assert _k_key(configs / "quickstart.yaml") == "vote.k"
    assert _k_key(configs / "open_ended.yaml") == "rip.k"
    assert _k_key(configs / "no-such-file.yaml") == "vote.k"  # load_config then says what is wrong
