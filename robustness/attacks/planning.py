"""The planning attack: an attacker that knows the dynamics plans whole episodes of forced actions.

Lin et al. (2017, "Tactics of Adversarial Attack on Deep RL Agents") lure an agent along a
planned action sequence with a learned model of the environment (the "enchanting" attack).
Here the model is the environment itself: for an environment that replays exactly from its
reset seed, the attacker searches plans, one target action per step, each pushed for with
PGD (``PGD.towards``, no random start, so a plan always plays out the same way; where the
target cannot be forced within eps the agent takes its own action). The search is the
cross-entropy method over per-step action frequencies: ``population`` plans per round, the
``elites`` lowest-return episodes so far kept and refitted, ``rounds`` rounds, the constant
plans (one steady push per action) in the first round. The best plan found is then played once
more and that episode is the attack's row, checked against the budget like every other row.

It shows how much an attacker that plans ahead gains over the per-step attacks of the suite;
by construction (the constant plans are candidates) it is never weaker than the steady push of
``PGD("targeted", target=k)`` without random start. It costs ``population x rounds`` episodes
per evaluated episode (CartPole: ~10 s each on one core), so it is not part of ``--attack all``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch as th

from rllab.agent import Agent
from rllab.errors import RllabError
from robustness.attacks.base import Attack, PlayedEpisodes
from robustness.attacks.pgd import PGD
from robustness.threat import ThreatModel


class PlanningAttack(Attack):
    """Cross-entropy-method search of whole-episode plans of forced actions (see the module docstring)."""

    name = "plan"
    kind = "planning (white-box, knows the dynamics)"

    def __init__(self, population: int = 64, rounds: int = 30, elites: int = 8, steps: int = 10) -> None:
        super().__init__()
        if population < 2 or rounds < 1 or not 1 <= elites < population or steps < 1:
            raise RllabError(
                "the planning attack needs population >= 2, rounds >= 1, 1 <= elites < population, steps >= 1"
            )
        self.population, self.rounds, self.elites = population, rounds, elites
        self.pgd = PGD("targeted", steps=steps, random_start=False)
        self.gain_over_steady_push: float | None = None  # of the last row played

    @property
    def label(self) -> str:
        return f"plan-cem:pgd-{self.pgd.steps}"

    def settings(self) -> dict[str, Any]:
        return {
            **super().settings(),
            "search": "cross-entropy method over per-step target actions",
            "population": self.population,
            "rounds": self.rounds,
            "elites": self.elites,
            "forcing": f"PGD-{self.pgd.steps} towards each step's target action, no random start",
        }

    def check_victim(self, agent: Agent, norm: str, eps: Sequence[float]) -> None:
        """The planning attack plans discrete actions."""
        if not agent.is_discrete:
            raise RllabError("the planning attack plans discrete actions; this agent's actions are continuous")

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        raise RllabError("the planning attack plans whole episodes: run it through robustness.evaluate")

    # ------------------------------------------------------------------ search
    def _play(self, agent: Agent, envs: list, plans: np.ndarray, seed: int, threat: ThreatModel, record=None):
        """Plays ``plans`` (one per environment) from reset seed ``seed``; returns each episode's return."""
        obs = np.stack([env.reset(seed=seed)[0] for env in envs[: len(plans)]])
        returns = np.zeros(len(plans))
        alive = np.ones(len(plans), dtype=bool)
        for t in range(plans.shape[1]):
            live = np.flatnonzero(alive)
            if not len(live):
                break
            x = agent.as_tensor(obs[live])
            adv = self.pgd.towards(agent, x, threat, th.as_tensor(plans[live, t]))
            sizes = threat.check(adv, x, self.label)
            actions = agent.act(adv)
            if record is not None:
                record(sizes, actions, agent.act(x))
            for k, a in zip(live, actions, strict=True):
                o, r, term, trunc, _ = envs[k].step(a)
                obs[k], returns[k] = o, returns[k] + float(r)
                alive[k] = not (term or trunc)
        if alive.any():
            raise RllabError(f"the planning attack's horizon ({plans.shape[1]} steps) is shorter than an episode")
        return returns

    def play(self, agent: Agent, threat: ThreatModel, episodes: int, seed: int) -> PlayedEpisodes:
        """The attack's row: episode ``j`` (reset seed ``seed + j``) under the best plan found for it."""
        self.check_victim(agent, threat.norm, [threat.eps])
        envs = [agent.make_env() for _ in range(self.population)]
        try:
            horizon = envs[0].spec.max_episode_steps if envs[0].spec is not None else None
            if not horizon:
                raise RllabError("the planning attack needs an environment with a step limit (max_episode_steps)")
            n = int(agent.action_space.n)
            rng = np.random.default_rng(seed)
            returns, changed, sizes, gains = [], 0, [], []
            for j in range(episodes):
                best, best_returns, constant = self._search(agent, envs, seed + j, threat, int(horizon), n, rng)
                record_sizes: list[float] = []
                counts = [0]

                def record(s, a_adv, a_clean, record_sizes=record_sizes, counts=counts):
                    record_sizes.extend(s.tolist())
                    counts[0] += int((np.asarray(a_adv) != np.asarray(a_clean)).sum())

                replay = self._play(agent, envs, best[None], seed + j, threat, record)[0]
                if replay != best_returns:
                    raise RllabError(
                        f"{agent.env_id} did not replay the same episode from reset seed {seed + j} "
                        "(random dynamics or a random agent): the planning attack needs both deterministic"
                    )
                returns.append(replay)
                sizes += record_sizes
                changed += counts[0]
                gains.append(min(constant) - replay)
        finally:
            for env in envs:
                env.close()
        self.gain_over_steady_push = float(np.mean(gains))
        return PlayedEpisodes(returns=returns, action_changes=changed, sizes=sizes)

    def row_extras(self, row: dict[str, Any]) -> dict[str, Any]:
        return {"gain_over_steady_push": self.gain_over_steady_push}

    def _search(self, agent, envs, seed, threat, horizon, n, rng):
        """The cross-entropy method for one reset seed: (best plan, its return, the constant plans' returns)."""
        probs = np.full((horizon, n), 1.0 / n)
        best = np.zeros((0, horizon), dtype=np.int64)
        best_returns = np.zeros(0)
        constant: list[float] = []
        for r in range(self.rounds):
            fresh_n = self.population - len(best)
            u = rng.random((fresh_n, horizon, 1))
            fresh = (u > probs.cumsum(-1)[None]).sum(-1).clip(max=n - 1)
            if r == 0:
                k = min(n, fresh_n)
                fresh[:k] = np.arange(k)[:, None]
            got = self._play(agent, envs, fresh, seed, threat)
            if r == 0:
                constant = got[:k].tolist()
            plans, scores = np.concatenate([best, fresh]), np.concatenate([best_returns, got])
            order = np.argsort(scores, kind="stable")[: self.elites]
            best, best_returns = plans[order], scores[order]
            freq = np.stack([(best == a).mean(0) for a in range(n)], -1)
            probs = np.clip(0.7 * freq + 0.3 * probs, 0.02, None)
            probs /= probs.sum(-1, keepdims=True)
        return best[0], float(best_returns[0]), constant
