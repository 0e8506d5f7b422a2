"""Shared fixtures: small agents trained once per test session.

Set RLLAB_TEST_CACHE=/some/dir to keep these agents between runs while developing
(CI never sets it, so CI always trains them afresh).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import pytest
import torch

import rllab
from rllab.agent import Agent, clone_module
from rllab.cli import main
from tests.helpers import TINY_STUDY

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


def trained_run(tmp_path_factory: pytest.TempPathFactory, name: str, **kwargs) -> Path:
    """A run folder trained once per session (or reused from RLLAB_TEST_CACHE when complete)."""
    cache = os.environ.get("RLLAB_TEST_CACHE")
    root = Path(cache) if cache else tmp_path_factory.getbasetemp() / "agents"
    run = root / name
    if (run / "agent.json").exists():
        try:
            if rllab.load(run).spec["training"].get("complete"):
                return run
        except rllab.RllabError:
            pass
        import shutil

        shutil.rmtree(run)
    rllab.train(out=run, progress=False, **kwargs)
    return run


@pytest.fixture
def one_thread():
    """Tiny networks on one intra-op thread: two threads oversubscribe a busy 2-core CPU (a Gaussian
    policy's small ops ran ~100x slower). Modules of tiny-network tests use it for every test."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def cartpole_ppo_path(tmp_path_factory) -> Path:
    """PPO on CartPole-v1 with the shipped defaults, seed 0 (mean return 500)."""
    return trained_run(tmp_path_factory, "cartpole-ppo", algo="ppo", env="CartPole-v1", seed=0, steps=100_000)


@pytest.fixture(scope="session")
def catch_ppo_path(tmp_path_factory) -> Path:
    """PPO (small CNN) on Catch-v0 with the shipped defaults, seed 0."""
    return trained_run(tmp_path_factory, "catch-ppo", algo="ppo", env="Catch-v0", seed=0, steps=60_000)


@pytest.fixture(scope="session")
def cartpole_ppo(cartpole_ppo_path) -> rllab.Agent:
    return rllab.load(cartpole_ppo_path)


@pytest.fixture(scope="session")
def catch_ppo(catch_ppo_path) -> rllab.Agent:
    return rllab.load(catch_ppo_path)


@pytest.fixture(scope="session")
def purified_path(cartpole_ppo_path, tmp_path_factory) -> Path:
    """The CartPole PPO agent behind a (non-identity, fixed-seed) MLP purifier, saved as a checkpoint."""
    base = rllab.load(cartpole_ppo_path)
    spec = copy.deepcopy(base.spec)
    spec["preprocessing"]["purifier"] = {"kind": "mlp", "hidden": [8], "center": [0.0] * 4, "scale": [1.0] * 4}
    agent = Agent(spec, clone_module(base.policy))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in agent.purifier.parameters():
            p.copy_(0.05 * torch.randn(p.shape, generator=gen))
    out = tmp_path_factory.mktemp("purified") / "run"
    agent.save(out)
    return out


@pytest.fixture(scope="session")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    """``rllab lab`` on tests.helpers.TINY_STUDY, run once per session: (its study file, its folder). Tests that
    change it work on a copy."""
    root = tmp_path_factory.mktemp("study")
    (root / "tiny.yml").write_text(TINY_STUDY)
    assert main(["lab", str(root / "tiny.yml"), "--out", str(root / "tiny"), "--jobs", "2"]) == 0  # stages forked
    return root / "tiny.yml", root / "tiny"
