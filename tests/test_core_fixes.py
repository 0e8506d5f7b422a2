"""Regression tests for fixed bugs in the agent, checkpoints, transforms, import and evaluation."""

from __future__ import annotations

import copy
import hashlib
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch as th

import rllab
from rllab.agent import Agent, agent_from_spec, clone_module, spec_skeleton
from rllab.checkpoint import SPEC_FILE, WEIGHTS_FILE
from rllab.transforms import distill, prune

pytestmark = pytest.mark.usefixtures("one_thread")


def _obs(agent: Agent, n: int = 32, seed: int = 0) -> np.ndarray:
    space = copy.deepcopy(agent.observation_space)
    space.seed(seed)
    return np.stack([space.sample() for _ in range(n)])


def _purifier_state(agent: Agent) -> dict[str, th.Tensor]:
    return {k: v.detach().clone() for k, v in agent.purifier.state_dict().items()}


@pytest.fixture(scope="module")
def purified_path(cartpole_ppo_path, tmp_path_factory) -> Path:
    """The CartPole PPO agent behind a (non-identity, fixed-seed) MLP purifier, saved as a checkpoint."""
    base = rllab.load(cartpole_ppo_path)
    spec = copy.deepcopy(base.spec)
    spec["preprocessing"]["purifier"] = {"kind": "mlp", "hidden": [8], "center": [0.0] * 4, "scale": [1.0] * 4}
    agent = Agent(spec, clone_module(base.policy))
    gen = th.Generator().manual_seed(0)
    with th.no_grad():
        for p in agent.purifier.parameters():
            p.copy_(0.05 * th.randn(p.shape, generator=gen))
    out = tmp_path_factory.mktemp("purified") / "run"
    agent.save(out)
    return out


# ------------------------------------------------------- bug 1: derive keeps the input defenses
def test_derive_copies_the_purifier_and_normalisation(purified_path):
    parent = rllab.load(purified_path)
    child = parent.derive(clone_module(parent.policy), "prune", {}, purified_path)
    for k, v in _purifier_state(parent).items():
        assert th.equal(child.purifier.state_dict()[k], v), k
    x = _obs(parent)
    assert th.equal(child.logits(x), parent.logits(x))
    # a copy, not shared: changing the child's purifier leaves the parent's alone
    with th.no_grad():
        next(child.purifier.parameters()).add_(1.0)
    assert not th.equal(next(child.purifier.parameters()), next(parent.purifier.parameters()))
    assert not child.training  # derived from an agent in eval mode


def test_prune_and_distill_keep_a_trained_purifier(purified_path, tmp_path):
    parent_state = _purifier_state(rllab.load(purified_path))
    pruned = rllab.load(
        prune(purified_path, sparsity=0.3, finetune="none", out=tmp_path / "p", eval_episodes=1, progress=False).path
    )
    student = rllab.load(
        distill(
            purified_path, arch=[8], steps=64, rounds=1, epochs=2, out=tmp_path / "d", eval_episodes=1, progress=False
        ).path
    )
    for agent in (pruned, student):
        for k, v in parent_state.items():
            assert th.equal(agent.purifier.state_dict()[k], v), k


def test_defend_keeps_a_purified_parents_purifier(purified_path, tmp_path):
    from rllab.defend import defend

    parent = rllab.load(purified_path)
    smoothed = defend(purified_path, tmp_path / "s", smoothing={"sigma": 0.1, "n": 4, "mode": "mean"})
    for k, v in _purifier_state(parent).items():
        assert th.equal(smoothed.purifier.state_dict()[k], v), k  # was a fresh random purifier
    x = th.as_tensor(_obs(parent), dtype=th.float32)
    with th.no_grad():
        assert th.equal(smoothed.purifier(x), parent.purifier(x))


def test_distillation_trains_only_the_student_policy(purified_path):
    from rllab.transforms.distill import fit, new_student, student_kwargs

    teacher = rllab.load(purified_path)
    kwargs = student_kwargs(teacher, [8], False, None)
    student = teacher.derive(new_student(teacher, kwargs), "distill", {}, purified_path, policy_kwargs=kwargs)
    before_policy = [p.detach().clone() for p in student.policy.parameters()]
    states = _obs(teacher, 64).astype(np.float32)
    fit(student, [teacher], states, 1.0, 2, 1e-2, 32, False, th.Generator().manual_seed(0))
    for k, v in _purifier_state(teacher).items():
        assert th.equal(student.purifier.state_dict()[k], v), k
    assert any(not th.equal(a, b) for a, b in zip(before_policy, student.policy.parameters(), strict=True))


# ------------------------------------------------------- bugs 2, 3: loading
def test_load_accepts_the_path_of_agent_json(cartpole_ppo_path, tmp_path):
    from rllab.transforms import load_quantized, quantize

    folder = rllab.load(cartpole_ppo_path)
    by_file = rllab.load(cartpole_ppo_path / SPEC_FILE)
    x = _obs(folder)
    assert th.equal(by_file.logits(x), folder.logits(x))
    assert by_file.path == Path(cartpole_ppo_path)
    assert th.equal(load_quantized(cartpole_ppo_path / SPEC_FILE).logits(x), folder.logits(x))
    q_dir = quantize(cartpole_ppo_path, out=tmp_path / "q", eval_episodes=1).path
    q = rllab.load(q_dir)
    for loaded in (rllab.load(q_dir / SPEC_FILE), load_quantized(q_dir / SPEC_FILE)):
        assert loaded.path == q_dir
        assert th.equal(loaded.logits(x), q.logits(x))
    with pytest.raises(rllab.RllabError, match="is a file"):
        rllab.load(cartpole_ppo_path / WEIGHTS_FILE)


def test_load_never_mixes_weights_swapped_in_after_the_hash_check(cartpole_ppo_path, tmp_path, monkeypatch):
    """A save that replaces the weights file between the hash check and the read cannot leak into the agent."""
    import rllab.checkpoint as ckpt

    run = tmp_path / "run"
    shutil.copytree(cartpole_ppo_path, run, ignore=shutil.ignore_patterns("tb", "resume"))
    original = rllab.load(run)
    other = rllab.load(run)
    with th.no_grad():
        for p in other.policy.parameters():
            p.mul_(-1.0)
    other.save(tmp_path / "other")
    swapped_in = (tmp_path / "other" / WEIGHTS_FILE).read_bytes()
    real_sha256 = hashlib.sha256

    class SwapAfterHashing:  # hashes what it is given; the moment the digest is taken, a concurrent save lands
        def __init__(self, *args):
            self._h = real_sha256(*args)

        def update(self, data):
            self._h.update(data)

        def hexdigest(self):
            digest = self._h.hexdigest()
            (run / WEIGHTS_FILE).write_bytes(swapped_in)
            return digest

    monkeypatch.setattr(ckpt.hashlib, "sha256", SwapAfterHashing)
    loaded = rllab.load(run)
    monkeypatch.undo()
    x = _obs(original)
    assert th.equal(loaded.logits(x), original.logits(x))
    # the file on disk is now the other agent's, and agent.json does not vouch for it
    with pytest.raises(rllab.RllabError, match="does not match the hash"):
        rllab.load(run)


# ------------------------------------------------------- bug 9: device after quantisation
def test_quantized_agent_reports_the_device_it_was_moved_to():
    from rllab.transforms.quantize import apply_quantization_spec, quantize_agent

    spec = spec_skeleton(
        "ppo",
        "X",
        {},
        [],
        gym.spaces.Box(-1, 1, (20,), np.float32),
        gym.spaces.Discrete(3),
        "ActorCriticPolicy",
        {"net_arch": [64, 64]},
        True,
    )
    agent = agent_from_spec(spec).eval()
    assert agent.device.type == "cpu"  # fills the cache
    q = quantize_agent(agent)
    assert q.device.type == "cpu"
    assert q.to("meta").device.type == "meta"
    rebuilt = agent_from_spec(copy.deepcopy(spec))
    assert rebuilt.device.type == "cpu"
    apply_quantization_spec(rebuilt, q.spec["quantization"])
    assert rebuilt.to("meta").device.type == "meta"


# ------------------------------------------------------- bug 4: resume state and checkpoint disagree
def test_resume_refuses_a_resume_state_newer_than_the_checkpoint(tmp_path):
    import json

    run = tmp_path / "run"
    small = {"n_steps": 32, "batch_size": 32, "n_epochs": 1}
    rllab.train(
        "ppo",
        "CartPole-v1",
        steps=64,
        n_envs=2,
        overrides=small,
        out=run,
        eval_freq=0,
        save_freq=0,
        final_eval_episodes=1,
        progress=False,
    )
    spec = json.loads((run / SPEC_FILE).read_text())
    done = spec["training"]["timesteps"]
    spec["training"]["complete"] = False  # as if killed mid-run (agent.json is not covered by the weights' hash)
    (run / SPEC_FILE).write_text(json.dumps(spec))
    # consistent: resumes (nothing left to train)
    agent = rllab.train("ppo", "CartPole-v1", out=run, resume=True, steps=done, final_eval_episodes=1, progress=False)
    assert agent.spec["training"]["resumed_from"] == done
    # killed between writing resume/state.json and the checkpoint: the counter ran ahead of the weights
    spec["training"]["complete"] = False
    (run / SPEC_FILE).write_text(json.dumps(spec))
    state = json.loads((run / "resume" / "state.json").read_text())
    (run / "resume" / "state.json").write_text(json.dumps({**state, "num_timesteps": done + 64}))
    with pytest.raises(
        rllab.RllabError, match=f"checkpoint is at step {done} but the resume state at step {done + 64}"
    ):
        rllab.train("ppo", "CartPole-v1", out=run, resume=True, steps=done + 64, final_eval_episodes=1, progress=False)


# ------------------------------------------------------- bug 10: videos of image observations
class _Frames(gym.Env):
    """Three steps of flat frames whose channel c holds 40 * (c + 1) + 10 * t; no rgb_array rendering."""

    metadata = {"render_modes": []}

    def __init__(self, shape=(3, 4, 5), channel_axis=0):
        self.shape, self.axis = shape, channel_axis
        self.observation_space = gym.spaces.Box(0, 255, shape, np.uint8)
        self.action_space = gym.spaces.Discrete(2)

    def _obs(self):
        c = self.shape[self.axis]
        values = (40 * (np.arange(c) + 1) + 10 * self.t).astype(np.uint8)
        return np.moveaxis(np.broadcast_to(values, (*np.delete(self.shape, self.axis), c)), -1, self.axis).copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        self.t += 1
        return self._obs(), 0.0, self.t >= 3, False, {}


@pytest.mark.parametrize(
    "shape,axis,rgb",
    # (3, 4, 3): channels first by SB3's rule (the smallest axis first), which the shape alone cannot tell
    [((4, 5, 1), 2, False), ((3, 4, 5), 0, True), ((4, 5, 3), 2, True), ((1, 4, 5), 0, False), ((3, 4, 3), 0, True)],
)
def test_video_of_image_observations_keeps_their_colours(tmp_path, shape, axis, rgb):
    from PIL import Image

    from rllab.evaluation import record_video
    from rllab.training import _needs_transpose

    env_id = f"rllabtest/Frames{'x'.join(map(str, shape))}-v0"
    if env_id not in gym.registry:
        gym.register(env_id, entry_point=_Frames, kwargs={"shape": shape, "channel_axis": axis})
    space = gym.spaces.Box(0, 255, shape, np.uint8)
    spec = spec_skeleton(
        "ppo",
        env_id,
        {},
        [],
        space,
        gym.spaces.Discrete(2),
        "ActorCriticPolicy",
        {"net_arch": [4], "features_extractor": "flatten"},
        True,
        transpose_image=_needs_transpose(space),
    )
    path = record_video(agent_from_spec(spec).eval(), tmp_path / "v.gif")
    with Image.open(path) as gif:
        assert gif.n_frames == 4  # reset + 3 steps
        for t in range(4):
            gif.seek(t)
            frame = np.asarray(gif.convert("RGB"))
            height, width = np.delete(shape, axis)
            assert frame.shape == (height * 16, width * 16, 3)
            want = [40 + 10 * t, 80 + 10 * t, 120 + 10 * t] if rgb else [40 + 10 * t] * 3
            assert (frame == want).all(), (t, frame[0, 0], want)


# ------------------------------------------------------- (f) stochastic acting with smoothing, DQN
@pytest.mark.parametrize("mode", ["mean", "vote"])
def test_stochastic_acting_with_smoothing_samples_the_smoothed_distribution(cartpole_ppo, mode):
    spec = copy.deepcopy(cartpole_ppo.spec)
    spec["preprocessing"]["smoothing"] = {"sigma": 0.5, "n": 8, "mode": mode}
    agent = Agent(spec, cartpole_ppo.policy).eval()
    obs = np.repeat(_obs(agent, 1), 4000, axis=0) * 0.1  # one state near the balance point
    th.manual_seed(0)
    with th.no_grad():
        probs = agent.action_dist(obs).probs.mean(0).numpy()
    th.manual_seed(1)
    sampled = agent.act(obs, deterministic=False)
    assert 0.05 < probs[1] < 0.95  # the test means something: both actions are likely
    assert abs(sampled.mean() - probs[1]) < 0.03  # frequencies follow the smoothed distribution


def test_evaluation_records_that_a_dqn_agent_acted_greedily():
    from rllab.evaluation import evaluate

    env = gym.make("CartPole-v1")
    spec = spec_skeleton(
        "dqn", "CartPole-v1", {}, [], env.observation_space, env.action_space, "DQNPolicy", {"net_arch": [8]}, False
    )
    env.close()
    agent = agent_from_spec(spec).eval()
    result = evaluate(agent, episodes=2, deterministic=False)
    assert result.summary()["deterministic"] is True
    assert result.returns == evaluate(agent, episodes=2, deterministic=True).returns
