"""Black-box transfer through a behaviour-cloned surrogate (Papernot et al. 2017; Huang et al. 2017).

1. Query the victim for its actions on observations it visits (its own rollouts), up to a
   query budget. Every victim query, that is every step of those rollouts, is one labelled
   observation and counts against the budget; the rollouts stop when it is spent.
2. Train a surrogate policy on those labels by cross-entropy (behaviour cloning). Its
   architecture is configurable and by default differs from the victim's.
3. At attack time, run PGD on the surrogate (white-box on the surrogate, no victim
   gradients and no further victim queries) and hand the perturbed observation to the victim.

The card reports the queries, the surrogate's agreement with the victim on held-out states,
and the evaluation reports the step-level transfer rate (the fraction of perturbed steps
where the victim's action changed).
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.evaluation import run_episodes
from rllab.units import ThreatUnit
from robustness.attacks.base import Attack
from robustness.attacks.pgd import PGD
from robustness.threat import ThreatModel

#: image side from which the surrogate downsamples with strided convolutions (Catch's 10x5 stays full-resolution)
STRIDED_FROM = 32


class SurrogatePolicy(nn.Module):
    """A standalone classifier over raw observations, with the agent-like calls PGD needs."""

    def __init__(
        self,
        obs_shape: tuple[int, ...],
        n_actions: int,
        hidden: list[int],
        image: bool,
        center: np.ndarray,
        scale: np.ndarray,
    ) -> None:
        super().__init__()
        self.is_discrete, self.has_critic, self.has_q = True, False, False
        self.register_buffer("center", th.as_tensor(center, dtype=th.float32))
        self.register_buffer("scale", th.as_tensor(np.maximum(scale, 1e-6), dtype=th.float32))
        layers: list[nn.Module] = []
        if image and min(obs_shape[1:]) >= STRIDED_FROM:
            # Atari-sized frames: strided convolutions (a small NatureCNN), or the first linear layer alone would
            # hold 16 x 84 x 84 x 128 weights and every epoch would take minutes on a CPU
            c = obs_shape[0]
            layers += [nn.Conv2d(c, 16, 8, stride=4), nn.ReLU(), nn.Conv2d(16, 32, 4, stride=2), nn.ReLU()]
            n_in = int(np.prod(nn.Sequential(*layers)(th.zeros(1, *obs_shape)).shape))
        elif image:
            c = obs_shape[0]
            layers += [nn.Conv2d(c, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, padding=1), nn.ReLU()]
            n_in = 16 * int(np.prod(obs_shape[1:]))
        else:
            n_in = int(np.prod(obs_shape))
        layers.append(nn.Flatten())
        for h in hidden:
            layers += [nn.Linear(n_in, h), nn.ReLU()]
            n_in = h
        layers.append(nn.Linear(n_in, n_actions))
        self.net = nn.Sequential(*layers)

    @property
    def device(self) -> th.device:
        """Where the surrogate's weights live."""
        return self.center.device

    def logits(self, obs: th.Tensor) -> th.Tensor:
        """Action scores of raw observations."""
        return self.net((obs.float() - self.center) / self.scale)

    def action_dist(self, obs: th.Tensor) -> Categorical:
        """The action distribution of raw observations."""
        return Categorical(logits=self.logits(obs))

    def straight_through(self):
        """No defenses to bypass: a null context (PGD's BPDA mode)."""
        return contextlib.nullcontext()


class _BudgetSpent(Exception):
    """Raised inside the labelling rollouts once the victim query budget is used up."""


class SurrogateTransfer(Attack):
    """PGD on a behaviour-cloned surrogate of the victim, transferred to the victim (see the module docstring)."""

    name = "surrogate"
    kind = "black-box (transfer)"
    discrete_only = True

    def __init__(
        self,
        queries: int = 20_000,
        hidden: list[int] | None = None,
        steps: int = 10,
        objective: str = "action",
        epochs: int = 30,
        holdout: float = 0.2,
    ) -> None:
        super().__init__()
        if queries < 10:
            raise RllabError("the surrogate needs a query budget of at least 10")
        self.budget, self.hidden, self.epochs, self.holdout = queries, hidden or [128, 128], epochs, holdout
        self.pgd = PGD(objective=objective, steps=steps)
        self.surrogate: SurrogatePolicy | None = None
        self.agreement: float | None = None

    @property
    def label(self) -> str:
        return f"surrogate:{self.pgd.objective}"

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "query_budget": self.budget,
            "queries_used": self.queries,
            "surrogate_hidden": self.hidden,
            "surrogate_epochs": self.epochs,
            "objective": self.pgd.objective,
            "steps": self.pgd.steps,
            "step_size": "2.5*eps/steps",
            "random_start": True,
            "restarts": 1,
            "heldout_agreement": self.agreement,
        }

    def prepare(self, agent: Agent, seed: int) -> None:
        if not agent.is_discrete:
            raise RllabError("the surrogate transfer attack needs a discrete-action victim")
        budget = self.budget
        used = 0
        # one buffer of the budget's size in the observations' own dtype (uint8 frames stay uint8: 20,000 Atari
        # stacks are 565 MB, not the 2.3 GB of float32 copies); minibatches are converted as they are used
        store: dict[str, np.ndarray] = {}

        def query(obs: np.ndarray, ctx: dict[str, Any]) -> np.ndarray:
            # every victim query drives the rollout and is labelled: the budget bounds all of them
            nonlocal used
            n = min(budget - used, len(obs))
            if n <= 0:
                raise _BudgetSpent
            actions = np.asarray(agent.act(obs[:n]))  # the victim's answer is all the attacker sees
            if not store:
                store["x"] = np.empty((budget, *obs.shape[1:]), dtype=obs.dtype)
                store["y"] = np.empty(budget, dtype=np.int64)
            store["x"][used : used + n], store["y"][used : used + n] = obs[:n], actions
            used += n
            if n < len(obs):  # the other environments would need answers beyond the budget
                raise _BudgetSpent
            return actions

        episodes = 1
        while used < budget and episodes <= 4096:
            try:
                run_episodes(agent, episodes, seed=seed + 50_000 + episodes, act_fn=query)
            except _BudgetSpent:
                break
            episodes *= 2
        x, y = th.from_numpy(store["x"][:used]), th.from_numpy(store["y"][:used])
        self.queries = int(len(x))
        gen = th.Generator().manual_seed(seed)
        perm = th.randperm(len(x), generator=gen)
        n_test = max(1, int(self.holdout * len(x)))
        test, train = perm[:n_test], perm[n_test:]
        # the surrogate's inputs are standardised: pixels by the threat unit, vectors by the queries' own statistics
        if agent.is_image:
            center, scale = np.zeros(x.shape[1:], dtype=np.float32), ThreatUnit.pixel(tuple(x.shape[1:])).scale
        else:
            center, scale = x[train].float().mean(0).numpy(), x[train].float().std(0).numpy()
        th.manual_seed(seed)
        model = SurrogatePolicy(
            tuple(x.shape[1:]), int(agent.action_space.n), self.hidden, agent.is_image, center, scale
        ).to(agent.device)
        opt = th.optim.Adam(model.parameters(), lr=1e-3)
        xd, yd = x.to(agent.device), y.to(agent.device)
        for _ in range(self.epochs):
            order = train[th.randperm(len(train), generator=gen)]
            for i in range(0, len(order), 256):
                idx = order[i : i + 256]
                loss = F.cross_entropy(model.logits(xd[idx]), yd[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        model.eval()
        with th.no_grad():  # in minibatches: 4,000 held-out Atari stacks as floats alone would be 450 MB
            hits = sum(int((model.logits(xd[idx]).argmax(-1) == yd[idx]).sum()) for idx in test.split(256))
            self.agreement = hits / len(test)
        self.surrogate = model

    def row_extras(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"transfer_rate": row["action_change_rate"]}

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        """PGD on the surrogate (no victim gradients or queries)."""
        if self.surrogate is None:
            raise RllabError("the surrogate attack must be prepared (trained) before use")
        return self.pgd(self.surrogate, obs, threat)  # type: ignore[arg-type]
