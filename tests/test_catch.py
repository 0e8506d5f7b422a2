import gymnasium as gym
import numpy as np
import pytest

import envs  # noqa: F401
from envs.catch import LEFT, RIGHT, STAY, CatchEnv


def test_registered_ids_and_spaces():
    env = gym.make("Catch-v0")
    obs, info = env.reset(seed=0)
    assert obs.shape == (1, 10, 5) and obs.dtype == np.uint8
    assert env.action_space.n == 3
    assert info["mask"].shape == (10, 5) and info["mask"].sum() == 2
    d = gym.make("CatchDistractors-v0")
    assert d.unwrapped.n_distractors == 3


def test_ball_falls_one_row_per_step_and_episode_lasts_rows_minus_one_steps():
    env = CatchEnv(rows=6, columns=4)
    obs, _ = env.reset(seed=3)
    col = env._ball[1]
    assert obs[0, 0, col] == 255
    steps, done = 0, False
    while not done:
        obs, r, term, trunc, info = env.step(STAY)
        steps += 1
        done = term or trunc
        assert env._ball[0] == steps
        assert obs[0, steps, col] == 255
    assert steps == 5


@pytest.mark.parametrize("follow,expected", [(True, 1.0), (False, -1.0)])
def test_reward_is_plus_one_for_a_catch_and_minus_one_for_a_miss(follow, expected):
    env = CatchEnv()
    rewards = []
    for seed in range(10):
        env.reset(seed=seed)
        done = False
        while not done:
            ball, paddle = env._ball[1], env._paddle
            if follow:
                a = STAY if ball == paddle else (RIGHT if ball > paddle else LEFT)
            else:  # run away from the ball
                a = LEFT if ball >= paddle else RIGHT
                if ball == paddle and paddle == 0:
                    a = RIGHT
            _, r, term, _, _ = env.step(a)
            done = term
        rewards.append(r)
    if follow:
        assert rewards == [expected] * 10
    else:
        assert all(r == expected for r in rewards)


def test_paddle_stays_inside_the_frame():
    env = CatchEnv(columns=3)
    env.reset(seed=0)
    for _ in range(3):
        env.step(LEFT)
    assert env._paddle == 0


def test_mask_marks_ball_and_paddle_never_distractors():
    env = CatchEnv(distractors=6, distractor_mode="move")
    obs, info = env.reset(seed=1)
    for _ in range(8):
        frame = obs[0]
        mask = info["mask"]
        assert set(np.unique(frame[mask])) == {255}
        assert np.all(frame[~mask] != 255)
        assert mask.sum() == 2
        obs, _, term, _, info = env.step(env.action_space.sample())
        if term:
            break
    lit = (obs[0] == 128).sum()
    assert lit >= 1


def test_distractors_never_change_reward():
    plain, noisy = CatchEnv(), CatchEnv(distractors=5, distractor_mode="flicker")
    for seed in range(5):
        plain.reset(seed=seed)
        noisy.reset(seed=seed)
        assert plain._ball[1] == noisy._ball[1]
        for a in [LEFT, RIGHT, STAY, RIGHT, LEFT, STAY, STAY, RIGHT, LEFT]:
            _, r1, t1, _, _ = plain.step(a)
            _, r2, t2, _, _ = noisy.step(a)
            assert (r1, t1) == (r2, t2)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        CatchEnv(rows=2)
    with pytest.raises(ValueError):
        CatchEnv(distractor_intensity=255)
    with pytest.raises(ValueError):
        CatchEnv(scale=0)


def test_scale_renders_each_cell_as_a_block_and_keeps_the_game():
    small, big = CatchEnv(distractors=2), CatchEnv(distractors=2, scale=3)
    assert big.observation_space.shape == (1, 30, 15)
    o1, i1 = small.reset(seed=4)
    o3, i3 = big.reset(seed=4)
    for a in [LEFT, RIGHT, STAY, RIGHT, LEFT, STAY, STAY, RIGHT, LEFT]:
        assert o3.shape == (1, 30, 15) and i3["mask"].shape == (30, 15)
        np.testing.assert_array_equal(o3[0], np.kron(o1[0], np.ones((3, 3), dtype=np.uint8)))
        np.testing.assert_array_equal(i3["mask"], np.kron(i1["mask"], np.ones((3, 3), dtype=bool)))
        assert i3["mask"].sum() == 18
        o1, r1, t1, _, i1 = small.step(a)
        o3, r3, t3, _, i3 = big.step(a)
        assert (r1, t1) == (r3, t3)
        if t1:
            break
