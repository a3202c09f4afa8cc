"""Open-files limit handling: the connection pool must fit RLIMIT_NOFILE (no timing here)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

resource = pytest.importorskip("resource")


def _run(soft: int, hard: int, code: str) -> str:
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                         preexec_fn=limit, check=True)
    return out.stdout.strip()


def test_fit_open_files_raises_the_soft_limit_up_to_the_hard_one() -> None:
    out = _run(512, 4096, """
        import resource
        from agen.providers.transport import fit_open_files
        print(fit_open_files(2000), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """)
    assert out == "2000 2256"


def test_fit_open_files_caps_the_pool_under_a_low_hard_limit() -> None:
    out = _run(512, 512, """
        from agen.providers.transport import fit_open_files
        print(fit_open_files(2000), fit_open_files(100))
    """)
    assert out == "256 100"


def test_providers_connector_fits_the_limit() -> None:
    out = _run(512, 512, """
        import asyncio
        from agen.config import ModelConfig, Price
        from agen.providers import Providers

        async def main():
            models = {"m": ModelConfig(model="x", max_concurrency=5000, price=Price(input=0, output=0))}
            async with Providers(models, base_urls={"m": "http://127.0.0.1:9/v1"}) as p:
                print(p.connection_limit, p._session.connector.limit)

        asyncio.run(main())
    """)
    assert out.splitlines()[-1] == "256 256"


def test_sim_lifts_its_own_open_files_limit() -> None:
    out = _run(512, 4096, """
        import resource
        from agen.sim.server import raise_nofile_limit
        print(raise_nofile_limit(), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    """)
    assert out == "4096 4096"
