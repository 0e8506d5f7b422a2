"""A denoising autoencoder placed in front of an agent: the "redraw the observation" defense.

Trained on the agent's own observations: the input is a corrupted observation (Gaussian
noise and uniform linf noise of the threat model's scale, plus attacked observations when
an ``attack`` callable is given), the target the clean one, loss MSE in threat-model units
(Vincent et al. 2008; as an adversarial purifier, cf. MagNet, Meng & Chen 2017). It is
differentiable, so white-box attacks go through it as they go through the policy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch as th
from torch import nn

from rllab.errors import RllabError


class Purifier(nn.Module):
    """x (raw units) -> scale to unit range -> autoencoder -> back to raw units, clipped to the bounds."""

    def __init__(
        self, shape: tuple[int, ...], kind: str, hidden: list[int], center: Any, scale: Any, low: float, high: float
    ) -> None:
        super().__init__()
        self.shape, self.kind, self.hidden = tuple(shape), kind, [int(h) for h in hidden]
        self.register_buffer("center", th.as_tensor(np.asarray(center, dtype=np.float32).reshape(shape)))
        self.register_buffer("scale", th.as_tensor(np.asarray(scale, dtype=np.float32).reshape(shape)))
        self.low, self.high = float(low), float(high)
        if kind == "conv":
            if len(shape) != 3:
                raise RllabError("a conv purifier needs (C, H, W) image observations")
            c = shape[0]
            layers: list[nn.Module] = []
            n_in = c
            for h in self.hidden:
                layers += [nn.Conv2d(n_in, h, 3, padding=1), nn.ReLU()]
                n_in = h
            layers.append(nn.Conv2d(n_in, c, 3, padding=1))
            self.net = nn.Sequential(*layers)
        elif kind == "mlp":
            d = int(np.prod(shape))
            layers = []
            n_in = d
            for h in self.hidden:
                layers += [nn.Linear(n_in, h), nn.ReLU()]
                n_in = h
            layers.append(nn.Linear(n_in, d))
            self.net = nn.Sequential(nn.Flatten(), *layers)
        else:
            raise RllabError(f"unknown purifier kind {kind!r}; use conv or mlp")

    def spec(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "hidden": self.hidden,
            "center": self.center.reshape(-1).tolist(),
            "scale": self.scale.reshape(-1).tolist(),
        }

    def forward(self, x: th.Tensor) -> th.Tensor:
        z = (x - self.center) / self.scale
        y = z + self.net(z).reshape(z.shape)  # residual: learns the correction, starts at the identity
        return (y * self.scale + self.center).clamp(self.low, self.high)


def build_purifier(entry: dict[str, Any], shape: tuple[int, ...], low: float, high: float) -> Purifier:
    try:
        return Purifier(shape, entry["kind"], entry["hidden"], entry["center"], entry["scale"], low, high)
    except KeyError as exc:
        raise RllabError(f"malformed purifier description: missing {exc}") from None


def train_purifier(
    agent: Any,
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
    from rllab.evaluation import run_episodes

    seen: list[np.ndarray] = []
    run_episodes(agent, episodes, seed=seed, on_step=lambda step: seen.append(np.asarray(step["obs"])))
    clean = th.as_tensor(np.concatenate(seen).astype(np.float32))
    shape = tuple(agent.observation_space.shape)
    if agent.is_image:
        center, scale = np.zeros(shape), np.full(shape, 255.0)
        kind = "conv" if not agent.transpose_image else "mlp"
    else:
        center = np.asarray(agent.obs_mean if agent.obs_mean is not None else clean.mean(0).numpy())
        std = agent.obs_std if agent.obs_std is not None else clean.std(0).numpy()
        scale = np.maximum(np.asarray(std), 1e-6)
        kind = "mlp"
    low, high = agent._bounds()
    hidden = hidden or ([32, 32] if kind == "conv" else [64, 64])
    th.manual_seed(seed)
    purifier = Purifier(shape, kind, hidden, center, scale, max(low, -1e9), min(high, 1e9)).to(agent.device)
    unit = purifier.scale
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
            corrupted = (
                src
                + th.where(
                    th.rand(src.shape[:1], generator=gen).to(src).view(-1, *[1] * (src.dim() - 1)) < 0.5, noise, box
                )
                * unit.cpu().to(src)
            ).clamp(purifier.low, purifier.high)
            loss = (((purifier(corrupted) - target) / unit) ** 2).mean()
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
