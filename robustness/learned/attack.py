"""The learned adversary as an attack: ``LearnedAttack(adversary)(agent, obs, threat) -> perturbed obs``.

A trained adversary checkpoint (``robustness.learned.train``) is used at every budget (the card
notes the eps it was trained for); without one, an adversary is trained for each eps at first use
and saved beside the victim (``VICTIM/adversaries/``). With ``adv_seeds`` N > 1, N adversaries (training
seeds seed..seed+N-1) are trained per eps and the strongest by their own closing evaluation is used, as
the ATLA paper keeps the strongest of several adversaries.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

from rllab.agent import Agent, load
from rllab.errors import RllabError
from robustness.attacks.base import Attack
from robustness.learned.env import ENV_ID, check_adversary, pa_ad_actor, register, trained_for
from robustness.learned.train import train_adversary
from robustness.threat import ThreatModel

MAX_ADV_SEEDS = 32  # each is a PPO training of --adv-steps


def load_adversary(adversary: Agent | str | Path) -> Agent:
    """A learned adversary checkpoint (one line if there is none, or it is another kind of agent)."""
    register()
    if isinstance(adversary, Agent):
        agent, where = adversary, adversary.path or adversary
    else:
        if not (Path(adversary) / "agent.json").exists():
            raise RllabError(f"no adversary checkpoint at {adversary}")
        agent, where = load(adversary), adversary
    if agent.env_id != ENV_ID:
        raise RllabError(f"{where} is not a learned adversary (its env is {agent.env_id})")
    return agent


class LearnedAttack(Attack):
    """The learned adversary (PA-AD director, white-box PGD actor) at each budget of an evaluation.

    ``adversary`` is a trained adversary checkpoint (or its loaded agent), used at every eps
    with its perturbations rescaled to that budget; without it, an adversary is trained with
    ``adv_steps`` PPO steps for each eps at first use and saved beside the victim.
    """

    name = "learned"
    kind = "learned adversary (PA-AD director, white-box PGD actor)"

    def __init__(
        self, adversary: Agent | str | Path | None = None, adv_steps: int = 30_000, adv_seeds: int = 1
    ) -> None:
        super().__init__()
        if isinstance(adv_steps, bool) or not isinstance(adv_steps, int) or adv_steps < 1:
            raise RllabError(f"--adv-steps must be a positive integer, got {adv_steps!r}")
        if isinstance(adv_seeds, bool) or not isinstance(adv_seeds, int) or not 1 <= adv_seeds <= MAX_ADV_SEEDS:
            raise RllabError(f"--adv-seeds must be an integer from 1 to {MAX_ADV_SEEDS}, got {adv_seeds!r}")
        if adversary is not None and adv_seeds > 1:
            raise RllabError("--adv-seeds applies to adversaries the attack trains itself, not to a given --adversary")
        self.adversary = load_adversary(adversary) if adversary is not None else None  # before any episode runs
        self.adversary_path = self.adversary.path if isinstance(adversary, Agent) else adversary
        self.adv_steps = adv_steps
        self.adv_seeds = adv_seeds
        self.selection: dict[str, dict[str, Any]] = {}  # per eps, with adv_seeds > 1: the candidates and the pick
        self._by_eps: dict[float, Agent] = {}  # adversaries trained at first use, per eps
        self._checked: list[tuple[Agent, Agent]] = []  # (adversary, victim) pairs already checked
        self._victim_path: Path | None = None
        self._normalized = False
        self._seed = 0
        self.trained: dict[str, str] = {}
        self.trained_for: dict[str, Any] | None = None
        self.warnings: list[str] = []

    def settings(self) -> dict[str, Any]:
        out = {
            **super().settings(),
            "adversary": str(self.adversary_path) if self.adversary_path else None,
            "adv_steps": self.adv_steps if self.adversary_path is None else None,
            "trained_adversaries": self.trained,
        }
        if self.adv_seeds > 1:
            out["adv_seeds"] = self.adv_seeds
            out["adversary_selection"] = self.selection
        if self.trained_for is not None:
            out["adversary_trained_for"] = self.trained_for
        if self.warnings:
            out["warnings"] = self.warnings
        return out

    def check_victim(self, agent: Agent, norm: str, eps: Sequence[float]) -> None:
        """Before any episode: a given adversary must fit this victim (one-line error); a different
        victim of the same kind, or another eps than its training one, prints a warning line."""
        if self.adversary is None:
            return
        self.warnings = check_adversary(self.adversary, agent, eps)
        trained = trained_for(self.adversary)
        self.trained_for = {k: trained.get(k) for k in ("env", "path", "eps")}
        for w in self.warnings:
            print(f"warning: {w}", file=sys.stderr)

    def prepare(self, agent: Agent, seed: int) -> None:
        self._seed = seed
        self._victim_path = agent.path
        self._normalized = bool(agent.normalize_obs)  # the adversary's PPO normalises as its victim did

    def adversary_for(self, eps: float) -> Agent:
        """The adversary used at budget ``eps``: the given one, or one trained for ``eps`` (at first use)."""
        if self.adversary is not None:
            return self.adversary
        if eps not in self._by_eps:
            if self._victim_path is None:
                raise RllabError("training a learned adversary needs the victim loaded from a checkpoint folder")
            candidates = [self._trained(eps, self._seed + k) for k in range(self.adv_seeds)]
            path, picked = candidates[0]
            if self.adv_seeds > 1:
                # the strongest by each adversary's own closing evaluation (its return is minus the victim's),
                # on episodes of its own seeds (20000+), never on the episodes this evaluation reports
                victim_return = {p: _closing_victim_return(p, adv) for p, adv in candidates}
                path, picked = min(candidates, key=lambda c: victim_return[c[0]])
                self.selection[f"{eps:g}"] = {
                    "picked": path,
                    "by": "lowest victim return in the adversary's own closing evaluation (seeds 20000 + its seed)",
                    "victim_return": victim_return,
                }
            self.trained[f"{eps:g}"] = path
            self._by_eps[eps] = picked
        return self._by_eps[eps]

    def _trained(self, eps: float, seed: int) -> tuple[str, Agent]:
        """The adversary of training seed ``seed`` at ``eps``, trained at first use and saved beside the victim."""
        assert self._victim_path is not None
        # the training budget is part of the name: a longer-trained adversary is a different attack
        name = f"learned-eps{eps:g}-s{seed}-{self.adv_steps}steps" + ("-norm" if self._normalized else "")
        out = Path(self._victim_path) / "adversaries" / name
        if not (out / "agent.json").exists():
            train_adversary(self._victim_path, eps, steps=self.adv_steps, seed=seed, out=out, progress=False)
        return str(out), load_adversary(out)

    def __call__(self, agent: Agent, obs: th.Tensor, threat: ThreatModel) -> th.Tensor:
        """The adversary's action on each observation, turned into a perturbation within ``threat``'s ball."""
        adversary = self.adversary_for(threat.eps)
        if not any(a is adversary and v is agent for a, v in self._checked):
            check_adversary(adversary, agent)  # another kind of victim fails in one line, not in PGD
            self._checked.append((adversary, agent))
        x = obs.detach().cpu().numpy().astype(np.float32)
        a = adversary.act(x)
        space = agent.observation_space
        low, high = np.asarray(space.low, np.float32), np.asarray(space.high, np.float32)
        radius = threat.eps * threat.scale.cpu().numpy()
        mode = adversary.spec["env"]["kwargs"].get("mode", "pa-ad")
        if mode == "direct":
            perturbed = np.clip(x + np.clip(a, -1.0, 1.0) * radius, low, high).astype(np.float32)
        else:
            steps = int(adversary.spec["env"]["kwargs"].get("pgd_steps", 10))
            perturbed = pa_ad_actor(agent, x, a, radius, low, high, steps)
        return threat.project(th.as_tensor(perturbed, device=obs.device), obs)


def _closing_victim_return(path: str, adversary: Agent) -> float:
    """The victim's mean return in the adversary's closing evaluation (minus the adversary's own)."""
    final = (adversary.spec.get("training") or {}).get("final_eval") or {}
    if isinstance(final.get("mean_return"), bool) or not isinstance(final.get("mean_return"), (int, float)):
        raise RllabError(f"{path} records no closing evaluation to compare it with the other adversaries by")
    return -float(final["mean_return"])
