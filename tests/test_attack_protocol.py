"""The one attack protocol (robustness.attacks.base.Attack): evaluate drives any attack through its hooks only."""

from __future__ import annotations

import pytest

from rllab.errors import RllabError
from robustness.attacks.base import Attack, PlayedEpisodes
from robustness.evaluate import evaluate


class _Identity(Attack):
    """Leaves the observation as it is, and records which hooks ran."""

    name = "identity"

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def check_victim(self, agent, norm, eps) -> None:
        self.calls.append("check_victim")

    def prepare(self, agent, seed) -> None:
        self.calls.append("prepare")

    def row_start(self) -> None:
        self.calls.append("row_start")

    def row_extras(self, row):
        return {"extra": row["steps"]}

    def __call__(self, agent, obs, threat):
        return obs.clone()


class _Refused(_Identity):
    name = "refused"
    discrete_only = True

    def supports(self, agent) -> bool:
        return False

    def check_victim(self, agent, norm, eps) -> None:
        Attack.check_victim(self, agent, norm, eps)


class _Played(_Identity):
    """Plays its episodes itself: every step unperturbed, return 7."""

    name = "played"

    def play(self, agent, threat, episodes, seed):
        return PlayedEpisodes(returns=[7.0] * episodes, action_changes=0, sizes=[0.0, 0.0])

    def __call__(self, agent, obs, threat):
        raise AssertionError("an attack that plays its episodes is never called per step")


def test_evaluate_calls_the_hooks_in_order(cartpole_ppo):
    a = _Identity()
    card = evaluate(cartpole_ppo, attacks=[a], eps=[0.1, 0.2], episodes=1, n_envs=1, progress=False)
    assert a.calls == ["check_victim", "prepare", "row_start", "row_start"]
    row = card["results"]["identity"]["0.1"]
    assert row["extra"] == row["steps"] and row["action_change_rate"] == 0
    assert row["mean_return"] == card["clean"]["mean_return"]


def test_an_unsupported_victim_fails_before_any_episode(cartpole_ppo):
    with pytest.raises(RllabError, match="refused needs a discrete-action agent"):
        evaluate(cartpole_ppo, attacks=[_Refused()], eps=[0.1], episodes=1, n_envs=1, progress=False)


def test_an_attack_that_plays_its_episodes_gets_its_own_row(cartpole_ppo):
    card = evaluate(cartpole_ppo, attacks=[_Played()], eps=[0.1], episodes=2, n_envs=1, progress=False)
    row = card["results"]["played"]["0.1"]
    assert row["returns"] == [7.0, 7.0] and row["steps"] == row["attacked_steps"] == 2
    assert row["extra"] == 2 and row["mean_perturbation"] == 0.0
