"""The import layering of agen/ (leaves → mechanisms → stages → session/CLI) does not drift."""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parent.parent / "agen"

# Lower number = lower layer. A module may import only from its own layer or below.
LAYERS = {
    # leaves: typed seams, errors, config, prices, pure text/vote/dedup/RIP logic
    "agen.types": 0, "agen.errors": 0, "agen.yaml_text": 0, "agen.version": 0, "agen.native": 0, "agen.seeding": 0, "agen.config": 1, "agen.cost": 2,
    "agen.gen.parse": 2, "agen.gen.answers": 2, "agen.gen.vote": 3, "agen.gen.dedup": 2, "agen.gen.dedup_store": 1,
    "agen.gen.spill_dir": 1, "agen.gen.solutions": 3,
    "agen.gen.rip_metrics": 3, "agen.gen.category_parse": 2, "agen.gen.judge": 2,
    # verifiable domains: how answers are read and checked (code runs in a sandboxed child process)
    "agen.verify": 3,
    # mechanisms: endpoints at their limits, durable output, the simulated provider
    "agen.providers": 4, "agen.run": 4, "agen.sim": 4, "agen.coord": 4,
    # stages: prompts and filters
    "agen.gen.seeds": 5, "agen.gen.prompts": 5, "agen.filters": 5,
    # the engine: admission, workers, records, wiring
    "agen.engine": 6,
    # session and CLI
    "agen.app": 7, "agen.app.runner": 8, "agen.app.cli": 9, "agen.api": 9, "agen.__main__": 10,
}


def layer_of(module: str) -> int | None:
    best = None
    for prefix, layer in LAYERS.items():
        if module == prefix or module.startswith(prefix + "."):
            if best is None or len(prefix) > len(best[0]):
                best = (prefix, layer)
    return None if best is None else best[1]


def test_imports_point_downwards():
    """No module imports from a layer above its own, and the simulator never imports the client."""
    problems = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        mod = ".".join(rel.parts).removesuffix(".__init__")
        own = layer_of(mod)
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                if not name.startswith("agen"):
                    continue
                other = layer_of(name)
                if other is not None and other > own:
                    problems.append(f"{mod} (layer {own}) imports {name} (layer {other})")
                if mod.startswith("agen.sim") and name.startswith(("agen.providers", "agen.run", "agen.engine")):
                    problems.append(f"{mod}: the simulator must not depend on the client side ({name})")
    assert not problems, "\n".join(problems)
