"""The figures every compression transform reports: size, speed and return."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch as th
from torch import nn

from rllab.agent import Agent
from rllab.checkpoint import WEIGHTS_FILE
from rllab.evaluation import evaluate
from rllab.parsing import plural


def actor_modules(agent: Agent) -> list[nn.Module]:
    """The modules on the path observation -> action (feature extractor, actor MLP, action head)."""
    policy = agent.policy
    if hasattr(policy, "q_net"):
        return [policy.q_net]
    mods: list[nn.Module] = [policy.pi_features_extractor, policy.mlp_extractor.policy_net, policy.action_net]
    if hasattr(policy, "log_std"):
        mods.append(_ParamHolder(policy.log_std))
    return mods


class _ParamHolder(nn.Module):
    """A module holding one parameter (a Gaussian policy's ``log_std``), so that it is counted."""

    def __init__(self, p: nn.Parameter) -> None:
        super().__init__()
        self.p = p


def _tensors(module: nn.Module) -> list[th.Tensor]:
    # quantised layers hold their weights as buffers, so buffers named like weights count too
    out = list(module.parameters())
    out += [b for name, b in module.named_buffers() if name.endswith("weight_int8")]
    return out


def count(module: nn.Module | list[nn.Module]) -> dict[str, int]:
    """Total and non-zero parameter counts (shared modules counted once)."""
    mods = module if isinstance(module, list) else [module]
    seen: dict[int, th.Tensor] = {}
    for m in mods:
        for t in _tensors(m):
            seen[id(t)] = t
    total = sum(t.numel() for t in seen.values())
    nonzero = sum(int((t != 0).sum()) for t in seen.values())
    return {"total": int(total), "nonzero": int(nonzero)}


def parameter_counts(agent: Agent) -> dict[str, dict[str, int]]:
    """Counts for the whole policy (actor and critic) and for the actor path alone. A DQN agent's
    target network is a training-time copy of its Q-network that never acts: it is not counted."""
    policy = agent.policy
    if hasattr(policy, "q_net_target"):
        return {"policy": count(policy.q_net), "actor": count(actor_modules(agent))}
    return {"policy": count(policy), "actor": count(actor_modules(agent))}


@th.no_grad()
def latency(agent: Agent, batch: int, repeats: int = 200, warmup: int = 20) -> float:
    """Median seconds of one ``agent.logits`` call on a batch of observations (CPU, current threads)."""
    rng = np.random.default_rng(0)
    space = agent.observation_space
    if agent.is_image:
        obs = rng.integers(0, 256, size=(batch, *space.shape)).astype(space.dtype)
    else:
        obs = rng.standard_normal((batch, *space.shape)).astype(np.float32)
    x = agent.as_tensor(obs)
    for _ in range(warmup):
        agent.logits(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        agent.logits(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def compression_summary(
    agent: Agent, path: str | Path | None = None, episodes: int = 20, seed: int = 0, repeats: int = 200
) -> dict[str, Any]:
    """Parameters (total, non-zero), weights-file bytes, CPU latency at batch 1 and 256, mean return."""
    result = evaluate(agent, episodes=episodes, seed=seed) if episodes > 0 else None
    path = Path(path) if path is not None else agent.path
    return {
        "parameters": parameter_counts(agent),
        "file_bytes": (path / WEIGHTS_FILE).stat().st_size if path is not None else None,
        "latency_s": {"batch_1": latency(agent, 1, repeats), "batch_256": latency(agent, 256, max(20, repeats // 4))},
        "latency_threads": th.get_num_threads(),
        "mean_return": result.summary()["mean_return"] if result else None,
        "ci95_return": result.summary()["ci95_return"] if result else None,
        "episodes": episodes,
        "eval_seed": seed,
    }


def summary_line(summary: dict[str, Any]) -> str:
    """One line of a compression summary: parameters, file size, latency and mean return."""
    p = summary["parameters"]
    lat = summary["latency_s"]
    ret = summary["mean_return"]
    return (
        f"params {p['policy']['total']:,} (non-zero {p['policy']['nonzero']:,}; actor {p['actor']['total']:,}) | "
        f"file {summary['file_bytes'] / 1024:.1f} KiB | latency b=1 {lat['batch_1'] * 1e6:.0f} us, "
        f"b=256 {lat['batch_256'] * 1e6:.0f} us | mean return "
        + (f"{ret:.2f} over {plural(summary['episodes'], 'episode')}" if ret is not None else "not evaluated")
    )
