"""Custom templates cannot crash a run: literal braces are text, mistakes are reported with file and
line before anything is written, and a template named in a config is found next to that config."""

from __future__ import annotations

from pathlib import Path

import yaml

from agen.app.runner import EXIT_INPUT, EXIT_OK, run_session
from agen.config import load_config
from agen.gen.prompts import fill, load_template
from conftest import ROOT, quick_raw, sim_config_file

GEN = (ROOT / "configs" / "templates" / "verifiable_generate.txt").read_text()


def _config_with_template(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "cfgs"
    folder.mkdir()
    (folder / "my_generate.txt").write_text(text)
    raw = quick_raw(tmp_path, proposals=3, target=6, simulator={"config": str(sim_config_file(tmp_path, latency_ms=2))},
                    propose={"template": "my_generate.txt"}, amplify={"template": "my_generate.txt"})
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_json_braces_in_a_template_next_to_the_config_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # not the config's folder: the template is found next to the config
    text = GEN.replace("{examples}", '{examples}\nReply format example: {"question": "...", "answer": {"value": 1}}')
    path = _config_with_template(tmp_path, text)
    out = run_session(load_config(path), config_dir=path.parent, live=False)
    assert out.exit_code == EXIT_OK, out.message


def test_a_misspelt_placeholder_is_reported_with_file_and_line(tmp_path):
    path = _config_with_template(tmp_path, "Look at these:\n\n{exampels}\n")
    out = run_session(load_config(path), config_dir=path.parent, live=False)
    assert out.exit_code == EXIT_INPUT
    assert f"{path.parent / 'my_generate.txt'}:3" in out.message and "did you mean {examples}" in out.message
    assert not (tmp_path / "run").exists()


def test_a_missing_placeholder_and_a_missing_file_are_one_line_errors(tmp_path):
    path = _config_with_template(tmp_path, "No placeholder here {at all}.\n")
    out = run_session(load_config(path), config_dir=path.parent, live=False)
    assert out.exit_code == EXIT_INPUT and "has no {examples} placeholder" in out.message
    (path.parent / "my_generate.txt").unlink()
    load_template.cache_clear()
    out = run_session(load_config(path), config_dir=path.parent, live=False)
    assert out.exit_code == EXIT_INPUT and "cannot read" in out.message
    assert not (tmp_path / "run").exists()


def test_fill_replaces_only_known_placeholders():
    text = 'JSON {"a": {"b": [1, 2]}} \\boxed{} {your_answer} {{question}} {question}'
    assert fill(text, question="Q{examples}") == 'JSON {"a": {"b": [1, 2]}} \\boxed{} {your_answer} {Q{examples}} Q{examples}'


def test_no_shipped_template_has_str_format_brace_escapes():
    """Templates are filled literally (`fill`), so a `{{` would reach the model as `\\boxed{{}}`."""
    shipped = sorted((ROOT / "configs" / "templates").glob("*.txt"))
    assert len(shipped) >= 10
    doubled = [f"{p.name}:{n}" for p in shipped for n, line in enumerate(p.read_text().splitlines(), 1)
               if "{{" in line or "}}" in line]
    assert doubled == []
    solve = fill((ROOT / "configs" / "templates" / "choice_solve.txt").read_text(), question="Q?")
    assert "\\boxed{}" in solve and "Q?" in solve
