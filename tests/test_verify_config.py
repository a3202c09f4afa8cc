"""`verify:` and `sandbox:` in the run config: values checked with their path, templates by domain."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agen.config import changed_output_fields, parse_config
from agen.errors import ConfigError
from agen.verify import make_verifier
from agen.verify.choice import ChoiceVerifier
from agen.verify.code import CodeVerifier
from agen.verify.math import MathVerifier

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def _raw(name: str = "quickstart.yaml") -> dict:
    return yaml.safe_load((CONFIGS / name).read_text())


def test_unknown_domain_is_named_with_its_choices():
    raw = _raw()
    raw["verify"] = "chemistry"
    with pytest.raises(ConfigError, match=r"verify: Input should be 'math', 'choice' or 'code'"):
        parse_config(raw, "q.yaml")


def test_verify_belongs_to_verifiable_tasks():
    raw = _raw("open_ended.yaml")
    raw["verify"] = "choice"
    with pytest.raises(ConfigError, match="task 'open_ended' has none"):
        parse_config(raw)


def test_sandbox_limits_are_checked():
    raw = _raw("quickstart_code.yaml")
    raw["sandbox"]["memory_mb"] = 1
    with pytest.raises(ConfigError, match=r"sandbox\.memory_mb"):
        parse_config(raw)
    raw["sandbox"]["memory_mb"] = 256
    raw["sandbox"]["cpu"] = 1
    with pytest.raises(ConfigError, match=r"sandbox\.cpu: unknown key; did you mean 'cpu_s'\?"):
        parse_config(raw)


def test_templates_and_verifier_follow_the_domain():
    math, choice, code = (parse_config(_raw(n)) for n in ("quickstart.yaml", "quickstart_choice.yaml",
                                                          "quickstart_code.yaml"))
    assert math.verify == "math" and math.template(math.propose) == "verifiable_generate.txt"
    assert choice.template(choice.propose) == "choice_generate.txt"
    assert code.template(code.amplify) == "code_generate.txt"
    assert code.template(code.amplify, "example") == "verifiable_example.txt"
    kinds = [type(make_verifier(c)) for c in (math, choice, code)]
    assert kinds == [MathVerifier, ChoiceVerifier, CodeVerifier]
    assert [make_verifier(c).solve_template for c in (math, choice, code)] == [
        "verifiable_solve.txt", "choice_solve.txt", "code_solve.txt"]
    raw = _raw("quickstart_choice.yaml")
    raw["vote"]["template"] = "my_solve.txt"
    assert make_verifier(parse_config(raw)).solve_template == "my_solve.txt"


def test_domain_defines_the_output_sandbox_parallelism_does_not():
    a = parse_config(_raw("quickstart_code.yaml"))
    raw = _raw("quickstart_code.yaml")
    raw["sandbox"]["parallel"] = 7
    assert changed_output_fields(a, parse_config(raw)) == []
    raw["verify"] = "choice"
    assert "verify" in changed_output_fields(a, parse_config(raw))


def test_shipped_domain_seeds_have_their_licence_beside_them():
    from agen.app.dataset_card import seed_licence

    data = CONFIGS.parent / "data"
    for name in ("choice_seeds.jsonl", "code_seeds.jsonl", "math500_sample.jsonl"):
        ident, text = seed_licence(data / name)
        assert ident == "mit", (name, text)


def test_math_runs_keep_the_fingerprint_they_had_before_verify_existed():
    """A run started before `verify:`/`sandbox:` were keys resumes: neither enters a math run's
    output-defining fields; a code run's sandbox limits do (they decide which samples pass)."""
    from agen.config import output_defining

    math = output_defining(parse_config(_raw()))
    assert not any(k == "verify" or k.startswith("sandbox.") for k in math)
    code = output_defining(parse_config(_raw("quickstart_code.yaml")))
    assert code["verify"] == "code" and code["sandbox.cpu_s"] == 1
    raw = _raw("quickstart_code.yaml")
    raw["sandbox"]["cpu_s"] = 3
    assert changed_output_fields(parse_config(_raw("quickstart_code.yaml")), parse_config(raw)) == ["sandbox.cpu_s"]
