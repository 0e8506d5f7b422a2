"""A denoising autoencoder placed in front of an agent: the "redraw the observation" defense.

The network only; ``rllab.purify.train_purifier`` fits it on the agent's own observations
(Vincent et al. 2008; as an adversarial purifier, cf. MagNet, Meng & Chen 2017). It is
differentiable, so white-box attacks go through it as they go through the policy.
"""

from __future__ import annotations

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
        """The description ``agent.json`` stores (``build_purifier`` reads it back)."""
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
    """The purifier a checkpoint's ``preprocessing.purifier`` entry describes (weights loaded later)."""
    try:
        return Purifier(shape, entry["kind"], entry["hidden"], entry["center"], entry["scale"], low, high)
    except KeyError as exc:
        raise RllabError(f"malformed purifier description: missing {exc}") from None
