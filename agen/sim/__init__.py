"""agen's simulated provider: a real HTTP server speaking OpenAI's and Anthropic's wire formats.

It lets agen run, be tested and be benchmarked with no API key and no network. Start it with
`start_sim()` (in-process, async), `SimProcess` (child process, sync) or `python -m agen.sim`.
"""

from agen.sim.config import SimConfig, SimModel, load_sim_config, parse_sim_config
from agen.sim.open_world import prompt_quality, response_quality
from agen.sim.process import SimProcess
from agen.sim.server import SimServer, build_app, serve, start_sim
from agen.sim.world import generate_problem, true_answer

__all__ = ["SimConfig", "SimModel", "SimProcess", "SimServer", "build_app", "generate_problem", "load_sim_config",
           "parse_sim_config", "prompt_quality", "response_quality", "serve", "start_sim", "true_answer"]
