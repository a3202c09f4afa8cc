"""Verifiable domains: how a sample's answer is read and checked (`verify: math | choice | code`).

`make_verifier(cfg)` builds the run's verifier from its config; the Answer-Consistency filter,
the parse step and the records ask it instead of knowing the domain themselves.
"""

from __future__ import annotations

from typing import Any

from agen.config import RunConfig
from agen.verify.base import InlineFeed, KeyClasses, Verifier

__all__ = ["DOMAINS", "InlineFeed", "KeyClasses", "Verifier", "domain_fields", "make_verifier"]

DOMAINS = ("math", "choice", "code")


def make_verifier(cfg: RunConfig) -> Verifier:
    """The verifier named by `cfg.verify`, with the vote's solve template and the sandbox limits."""
    template = cfg.solve_template()
    if cfg.verify == "choice":
        from agen.verify.choice import ChoiceVerifier

        return ChoiceVerifier(template)
    if cfg.verify == "code":
        from agen.verify.code import CodeVerifier

        return CodeVerifier(template, cfg.sandbox)
    from agen.verify.math import MathVerifier

    return MathVerifier(template)


def domain_fields(domain: str, question: str | None) -> dict[str, Any]:
    """What every verifiable record carries about its domain: the domain, and for code its tests
    (so `agen export --format rl` can hand a trainer something to run)."""
    fields: dict[str, Any] = {"domain": domain}
    if domain == "code" and question is not None:
        from agen.verify.code_format import split_tests

        fields["tests"] = list(split_tests(question)[1])
    return fields
