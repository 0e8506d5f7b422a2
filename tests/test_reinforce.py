import numpy as np
import pytest

from rllab.algos.reinforce import reward_to_go


def test_reward_to_go_matches_a_hand_computed_example():
    # one env, gamma 0.5; an episode of 3 steps (rewards 1, 2, 4), then a new
    # episode whose 2 steps (rewards 8, 16) are still running when the rollout ends.
    rewards = np.array([[1.0], [2.0], [4.0], [8.0], [16.0]])
    starts = np.array([[1], [0], [0], [1], [0]], dtype=np.float32)
    last_dones = np.array([False])
    returns, valid = reward_to_go(rewards, starts, last_dones, np.array([100.0]), gamma=0.5, bootstrap=False)
    # G_0 = 1 + .5*2 + .25*4 = 3 ; G_1 = 2 + .5*4 = 4 ; G_2 = 4
    np.testing.assert_allclose(returns[:3, 0], [3.0, 4.0, 4.0])
    assert valid[:, 0].tolist() == [True, True, True, False, False]
    # with the critic's bootstrap the unfinished tail gets V(s_T) = 100
    returns, valid = reward_to_go(rewards, starts, last_dones, np.array([100.0]), gamma=0.5, bootstrap=True)
    np.testing.assert_allclose(returns[:, 0], [3.0, 4.0, 4.0, 8 + 0.5 * 16 + 0.25 * 100, 16 + 0.5 * 100])
    assert valid.all()


def test_reward_to_go_stops_at_terminal_last_step_and_handles_several_envs():
    rewards = np.array([[1.0, 1.0], [1.0, 1.0]])
    starts = np.array([[1, 1], [0, 1]], dtype=np.float32)
    last_dones = np.array([True, False])
    returns, valid = reward_to_go(rewards, starts, last_dones, np.array([50.0, 50.0]), gamma=0.9, bootstrap=False)
    np.testing.assert_allclose(returns[:, 0], [1.9, 1.0])
    assert valid[:, 0].all()
    # env 1: step 0 was a one-step episode (step 1 starts a new one), step 1 is unfinished
    assert returns[0, 1] == pytest.approx(1.0)
    assert valid[:, 1].tolist() == [True, False]
