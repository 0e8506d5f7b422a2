"""Training a purifier (``rllab.nn.purifier.Purifier``) on an agent's own observations.

The input is a corrupted observation (Gaussian noise and uniform linf noise of the threat
model's scale, plus attacked observations when an ``attack`` callable is given), the target
the clean one, loss MSE in threat-model units (Vincent et al. 2008, denoising autoencoders;
as an adversarial purifier, cf. MagNet, Meng & Chen 2017).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th

from rllab.agent import Agent
from rllab.evaluation import collect_observations
from rllab.nn.purifier import Purifier
from rllab.units import ThreatUnit


def train_purifier(
    agent: Agent,
    episodes: int = 20,
    sigma: float = 0.1,
    epochs: int = 30,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    hidden: list[int] | None = None,
    attack: Callable[[Any, np.ndarray], np.ndarray] | None = None,
) -> tuple[Purifier, dict[str, Any]]:
    """Fit a purifier on ``agent``'s own observations; returns it and a training summary.

    ``sigma`` is the corruption scale in threat-model units (pixel/255 or obs-std
    multiples). ``attack(agent, obs) -> perturbed obs`` adds attacked observations.
    """
    clean = th.as_tensor(collect_observations(agent, episodes=episodes, seed=seed).astype(np.float32))
    shape = tuple(agent.observation_space.shape)
    if agent.is_image:
        unit = ThreatUnit.pixel(shape)
        center = np.zeros(shape)
        kind = "conv" if not agent.transpose_image else "mlp"
    else:
        center = np.asarray(agent.obs_mean if agent.obs_mean is not None else clean.mean(0).numpy())
        std = agent.obs_std if agent.obs_std is not None else clean.std(0).numpy()
        # a feature that never varied still gets a usable (tiny) unit
        unit = ThreatUnit.std(np.maximum(np.asarray(std), 1e-6), shape)
        kind = "mlp"
    low, high = agent.bounds()
    hidden = hidden or ([32, 32] if kind == "conv" else [64, 64])
    th.manual_seed(seed)
    purifier = Purifier(shape, kind, hidden, center, unit.scale, max(low, -1e9), min(high, 1e9)).to(agent.device)
    scale = purifier.scale  # the unit, as a tensor: corruption is drawn in threat units, the loss measured in them
    inputs = [clean]
    if attack is not None:
        inputs.append(th.as_tensor(np.asarray(attack(agent, clean.numpy()), dtype=np.float32)))
    opt = th.optim.Adam(purifier.parameters(), lr=lr)
    gen = th.Generator().manual_seed(seed)
    n = clean.shape[0]
    losses = []
    for _ in range(epochs):
        perm = th.randperm(n, generator=gen)
        for i in range(0, n, batch_size):
            idx = perm[i : i + batch_size]
            target = clean[idx].to(agent.device)
            src = inputs[int(th.randint(len(inputs), (1,), generator=gen))][idx].to(agent.device)
            noise = th.randn(src.shape, generator=gen).to(src) * sigma
            box = (th.rand(src.shape, generator=gen).to(src) * 2 - 1) * sigma
            gaussian = th.rand(src.shape[:1], generator=gen).to(src).view(-1, *[1] * (src.dim() - 1)) < 0.5
            corrupted = (src + th.where(gaussian, noise, box) * scale.cpu().to(src)).clamp(purifier.low, purifier.high)
            loss = (((purifier(corrupted) - target) / scale) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    purifier.eval()
    summary = {
        "observations": n,
        "episodes": episodes,
        "sigma": sigma,
        "epochs": epochs,
        "final_loss": float(np.mean(losses[-10:])),
        "attacked_inputs": attack is not None,
    }
    return purifier, summary
