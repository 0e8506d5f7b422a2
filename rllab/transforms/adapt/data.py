"""The two domains and the states adaptation learns from: the target spec, and states visited in lockstep in
both domains (the same reset seeds, the same actions), so that each source state has a target twin."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from rllab.agent import Agent
from rllab.environment import with_domain
from rllab.errors import RllabError
from rllab.evaluation import check_gather, run_episodes


def target_spec(
    spec: dict[str, Any],
    env: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    wrappers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The checkpoint's spec with its environment moved to the target domain (``with_domain``)."""
    if env is None and not env_kwargs and not wrappers:
        raise RllabError("give the target domain: --target-env, --target-env-kwargs and/or --target-wrappers")
    out = copy.deepcopy(spec)
    out["env"] = with_domain(out["env"], env, env_kwargs, wrappers)
    if out["env"] == spec["env"]:
        raise RllabError("the target domain is the source domain; give a shift")
    return out


def random_behaviour(agent: Agent, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """Uniformly random actions from a seeded copy of the action space: the same sequence on every call."""
    space = copy.deepcopy(agent.action_space)
    space.seed(seed)
    return lambda batch: np.stack([space.sample() for _ in range(len(batch))])


def own_behaviour(agent: Agent, explore: float, rng: np.random.Generator) -> Callable[[np.ndarray], np.ndarray]:
    """The source agent's own actions, with a random one with probability ``explore``."""
    random = random_behaviour(agent, int(rng.integers(2**31)))

    def act(batch: np.ndarray) -> np.ndarray:
        actions = agent.act(batch)
        if explore <= 0:
            return actions
        pick = (rng.random(len(batch)) < explore).reshape((-1,) + (1,) * (actions.ndim - 1))
        return np.where(pick, random(batch).reshape(actions.shape), actions)

    return act


def paired_states(
    behaviour: Callable[[np.ndarray], np.ndarray],
    source: Agent,
    target: Agent,
    steps: int,
    seed: int,
    n_envs: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """``steps`` raw observations in each domain, row ``i`` of one the twin of row ``i`` of the other.

    ``n_envs`` environments of each domain are reset with the same seeds (``seed``, ``seed + 1``, ...
    in the order their episodes start) and stepped with the same actions, chosen by ``behaviour`` from
    the *source* observations; when either twin's episode ends, both start the next seed. Where a
    shift leaves the task's random draws alone (Catch's distractors are drawn after the ball), the
    twins differ by the shift alone.
    """
    check_gather(source, 2 * steps)  # both domains' states are held in memory
    envs = [(source.make_env(), target.make_env()) for _ in range(n_envs)]
    obs = [(es.reset(seed=seed + i)[0], et.reset(seed=seed + i)[0]) for i, (es, et) in enumerate(envs)]
    started, seen_s, seen_t = n_envs, [], []
    try:
        while len(seen_s) * n_envs < steps:
            batch_s, batch_t = np.stack([o[0] for o in obs]), np.stack([o[1] for o in obs])
            seen_s.append(batch_s)
            seen_t.append(batch_t)
            actions = behaviour(batch_s)
            for i, (es, et) in enumerate(envs):
                os_, _, term_s, trunc_s, _ = es.step(actions[i])
                ot, _, term_t, trunc_t, _ = et.step(actions[i])
                if term_s or trunc_s or term_t or trunc_t:
                    os_, ot = es.reset(seed=seed + started)[0], et.reset(seed=seed + started)[0]
                    started += 1
                obs[i] = (os_, ot)
    finally:
        for es, et in envs:
            es.close()
            et.close()
    return np.concatenate(seen_s)[:steps], np.concatenate(seen_t)[:steps]


def mean_return(agent: Agent, episodes: int, seed: int) -> float:
    """The agent's mean return over ``episodes`` seeded episodes in its own environment."""
    return float(np.mean(run_episodes(agent, episodes, seed=seed).returns))
