"""Checkpoints: save/load round trips, the agent interface, hashes and refusals, atomic writes and file modes."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import rllab
from rllab.checkpoint import SPEC_FILE, WEIGHTS_FILE
from rllab.errors import RllabError
from tests.helpers import fails_in_one_line, sample_obs


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    runs = {}
    for algo, env, extra in [
        ("ppo", "CartPole-v1", {}),
        ("dqn", "CartPole-v1", {"overrides": {"learning_starts": 50}}),
        ("a2c", "Pendulum-v1", {}),
        ("ppo", "Catch-v0", {}),
        ("reinforce", "Acrobot-v1", {}),  # normalize: true in the shipped defaults
    ]:
        runs[(algo, env)] = root / f"{algo}-{env}"
        rllab.train(algo, env, seed=0, steps=512, out=runs[(algo, env)], progress=False, final_eval_episodes=2, **extra)
    return runs


def _obs_batch(agent, n=16, seed=0):
    space = agent.observation_space
    space.seed(seed)
    return np.stack([space.sample() for _ in range(n)])


@pytest.mark.parametrize(
    "key",
    [
        ("ppo", "CartPole-v1"),
        ("dqn", "CartPole-v1"),
        ("a2c", "Pendulum-v1"),
        ("ppo", "Catch-v0"),
        ("reinforce", "Acrobot-v1"),
    ],
)
def test_round_trip_gives_identical_logits(tiny_runs, tmp_path, key):
    agent = rllab.load(tiny_runs[key])
    obs = _obs_batch(agent)
    before = agent.logits(obs).detach()
    agent.save(tmp_path / "copy")
    again = rllab.load(tmp_path / "copy")
    torch.testing.assert_close(again.logits(obs).detach(), before, rtol=0, atol=0)
    np.testing.assert_array_equal(again.act(obs), agent.act(obs))
    assert again.spec["obs_stats"] == agent.spec["obs_stats"]


def test_logits_are_differentiable_wrt_raw_observations_including_preprocessing(tiny_runs):
    agent = rllab.load(tiny_runs[("ppo", "Catch-v0")])
    obs = torch.tensor(_obs_batch(agent), dtype=torch.float32, requires_grad=True)  # raw 0..255 pixels
    agent.logits(obs)[:, 0].sum().backward()
    assert obs.grad is not None and obs.grad.abs().sum() > 0
    # /255 scaling is inside: scaling the raw input by 255 reproduces the logits of the scaled policy input
    with torch.no_grad():
        direct = agent.policy.action_net(
            agent.policy.mlp_extractor.forward_actor(agent.policy.features_extractor(obs / 255.0))
        )
    torch.testing.assert_close(agent.logits(obs).detach(), direct)


def test_observation_normalisation_lives_inside_the_agent(tiny_runs):
    agent = rllab.load(tiny_runs[("reinforce", "Acrobot-v1")])
    assert agent.normalize_obs
    obs = torch.tensor(_obs_batch(agent), requires_grad=True)
    agent.value(obs).sum().backward()
    assert obs.grad.abs().sum() > 0
    norm = agent.spec["preprocessing"]["obs_normalization"]
    assert len(norm["mean"]) == 6 and all(v > 0 for v in norm["var"])


def test_agent_interface(tiny_runs):
    ppo = rllab.load(tiny_runs[("ppo", "CartPole-v1")])
    obs = _obs_batch(ppo)
    assert ppo.logits(obs).shape == (16, 2)
    assert ppo.value(obs).shape == (16,)
    assert ppo.features(obs).shape == (16, 64)
    dist = ppo.action_dist(obs)
    torch.testing.assert_close(dist.logits, torch.log_softmax(ppo.logits(obs), -1))
    assert ppo.act(obs[0]).shape == () and ppo.act(obs).shape == (16,)
    assert ppo.make_env().spec.id == "CartPole-v1"
    stats = ppo.spec["obs_stats"]
    assert len(stats["std"]) == 4 and stats["steps"] > 0

    dqn = rllab.load(tiny_runs[("dqn", "CartPole-v1")])
    assert not dqn.has_critic and dqn.has_q
    torch.testing.assert_close(dqn.q_values(obs), dqn.logits(obs))
    with pytest.raises(RllabError, match="no state-value critic"):
        dqn.value(obs)

    cont = rllab.load(tiny_runs[("a2c", "Pendulum-v1")])
    obs = _obs_batch(cont)
    acts = cont.act(obs)
    assert acts.shape == (16, 1) and np.all(np.abs(acts) <= 2.0)
    assert cont.action_dist(obs).log_prob(torch.zeros(16, 1)).shape == (16,)


def test_spec_is_plain_json_and_names_no_python_objects(tiny_runs):
    spec = json.loads((tiny_runs[("ppo", "Catch-v0")] / SPEC_FILE).read_text())
    assert spec["schema"] == "rllab.agent/1"
    assert spec["policy"]["kwargs"]["features_extractor"] == "small_cnn"
    assert spec["env"] == {"id": "Catch-v0", "kwargs": {}, "wrappers": []}
    assert spec["training"]["complete"] is True and spec["lineage"] == []
    assert "<class" not in json.dumps(spec)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def test_truncated_tampered_and_missing_files_are_refused(tiny_runs, tmp_path):
    src = tiny_runs[("ppo", "CartPole-v1")]
    bad = _copy(src, tmp_path / "truncated")
    data = (bad / WEIGHTS_FILE).read_bytes()
    (bad / WEIGHTS_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(RllabError, match="does not match the hash"):
        rllab.load(bad)

    bad = _copy(src, tmp_path / "tampered")
    raw = bytearray((bad / WEIGHTS_FILE).read_bytes())
    raw[-5] ^= 0xFF
    (bad / WEIGHTS_FILE).write_bytes(bytes(raw))
    with pytest.raises(RllabError, match="does not match the hash"):
        rllab.load(bad)

    bad = _copy(src, tmp_path / "badjson")
    (bad / SPEC_FILE).write_text("{not json")
    with pytest.raises(RllabError, match="corrupt"):
        rllab.load(bad)

    bad = _copy(src, tmp_path / "noweights")
    (bad / WEIGHTS_FILE).unlink()
    with pytest.raises(RllabError, match="no weights.safetensors"):
        rllab.load(bad)

    with pytest.raises(RllabError, match="no checkpoint"):
        rllab.load(tmp_path / "nothing-here")

    with pytest.raises(RllabError, match="is for 'CartPole-v1'"):
        rllab.load(src, env_id="Acrobot-v1")


def test_architecture_mismatch_is_refused(tiny_runs, tmp_path):
    bad = _copy(tiny_runs[("ppo", "CartPole-v1")], tmp_path / "arch")
    spec = json.loads((bad / SPEC_FILE).read_text())
    spec["policy"]["kwargs"]["net_arch"] = [8]
    (bad / SPEC_FILE).write_text(json.dumps(spec))
    with pytest.raises(RllabError, match="do not fit the architecture"):
        rllab.load(bad)


def test_checkpoint_for_another_env_is_refused(tiny_runs, tmp_path):
    bad = _copy(tiny_runs[("ppo", "CartPole-v1")], tmp_path / "other-env")
    spec = json.loads((bad / SPEC_FILE).read_text())
    spec["env"]["id"] = "Acrobot-v1"
    (bad / SPEC_FILE).write_text(json.dumps(spec))
    agent = rllab.load(bad)
    with pytest.raises(RllabError, match="do not match environment 'Acrobot-v1'"):
        agent.make_env()


def test_interrupted_save_leaves_the_previous_checkpoint_intact(tiny_runs, tmp_path):
    target = _copy(tiny_runs[("ppo", "CartPole-v1")], tmp_path / "ckpt")
    agent = rllab.load(target)
    before = (target / WEIGHTS_FILE).read_bytes(), (target / SPEC_FILE).read_text()

    import rllab.agent as agent_mod

    def crash(model, filename, *a, **k):
        Path(filename).write_bytes(b"partial")
        raise KeyboardInterrupt  # the process dies mid-write

    original = agent_mod.save_model
    agent_mod.save_model = crash
    try:
        with pytest.raises(KeyboardInterrupt):
            agent.save(target)
    finally:
        agent_mod.save_model = original
    assert ((target / WEIGHTS_FILE).read_bytes(), (target / SPEC_FILE).read_text()) == before
    assert not [p for p in os.listdir(target) if p.startswith(".saving-")]
    rllab.load(target)


def test_save_records_lineage(tiny_runs, tmp_path):
    from rllab.spec import LineageStep

    src = tiny_runs[("ppo", "CartPole-v1")]
    agent = rllab.load(src)
    agent.save(tmp_path / "child", lineage=LineageStep.of(src, agent.spec, "copy", {"note": "test"}))
    child = rllab.load(tmp_path / "child")
    (step,) = child.spec["lineage"]
    assert step["transform"] == "copy" and step["parent"] == str(src)
    assert step["parent_sha256"] == json.loads((src / SPEC_FILE).read_text())["weights"]["sha256"]


# ------------------------------- loading by agent.json's path; weights swapped in after the hash check
@pytest.mark.usefixtures("one_thread")
def test_load_accepts_the_path_of_agent_json(cartpole_ppo_path, tmp_path):
    from rllab.cli.transforms import quantize_checkpoint

    folder = rllab.load(cartpole_ppo_path)
    by_file = rllab.load(cartpole_ppo_path / SPEC_FILE)
    x = sample_obs(folder)
    assert torch.equal(by_file.logits(x), folder.logits(x))
    assert by_file.path == Path(cartpole_ppo_path)
    assert torch.equal(rllab.load(cartpole_ppo_path / SPEC_FILE).logits(x), folder.logits(x))
    q_dir = quantize_checkpoint(cartpole_ppo_path, out=tmp_path / "q", eval_episodes=1).path
    q = rllab.load(q_dir)
    for loaded in (rllab.load(q_dir / SPEC_FILE), rllab.load(q_dir / SPEC_FILE)):
        assert loaded.path == q_dir
        assert torch.equal(loaded.logits(x), q.logits(x))
    with pytest.raises(rllab.RllabError, match="is a file"):
        rllab.load(cartpole_ppo_path / WEIGHTS_FILE)


@pytest.mark.usefixtures("one_thread")
def test_load_never_mixes_weights_swapped_in_after_the_hash_check(cartpole_ppo_path, tmp_path, monkeypatch):
    """A save that replaces the weights file between the hash check and the read cannot leak into the agent."""
    import rllab.checkpoint as ckpt

    run = tmp_path / "run"
    shutil.copytree(cartpole_ppo_path, run, ignore=shutil.ignore_patterns("tb", "resume"))
    original = rllab.load(run)
    other = rllab.load(run)
    with torch.no_grad():
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
    x = sample_obs(original)
    assert torch.equal(loaded.logits(x), original.logits(x))
    # the file on disk is now the other agent's, and agent.json does not vouch for it
    with pytest.raises(rllab.RllabError, match="does not match the hash"):
        rllab.load(run)


# ------------------------------ writing: file modes, atomic writes, checkpoints that cannot be written
@pytest.mark.usefixtures("one_thread")
def test_written_files_get_the_normal_mode(cartpole_ppo, tmp_path, monkeypatch):
    import rllab.files
    from rllab.checkpoint import file_mode, write_json

    monkeypatch.setattr(rllab.files, "_UMASK", 0o022)  # the process umask, read once at import
    cartpole_ppo.save(tmp_path / "ckpt")
    write_json(tmp_path / "x.json", {"a": 1})
    for f in (tmp_path / "ckpt" / "weights.safetensors", tmp_path / "ckpt" / "agent.json", tmp_path / "x.json"):
        assert f.stat().st_mode & 0o777 == 0o644, f
    monkeypatch.setattr(rllab.files, "_UMASK", 0o027)
    assert file_mode() == 0o640


def test_atomically_written_files_get_the_umask_mode_not_0600(tmp_path, monkeypatch):
    import rllab.files
    from rllab.checkpoint import atomic_write as write_atomic

    # the process umask is read once at import (reading it means setting it: racy in threads)
    monkeypatch.setattr(rllab.files, "_UMASK", 0o022)
    write_atomic(tmp_path / "a" / "results.json", "{}\n")
    monkeypatch.setattr(rllab.files, "_UMASK", 0o027)
    write_atomic(tmp_path / "a" / "report.md", "x\n")
    assert (tmp_path / "a" / "results.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "a" / "report.md").stat().st_mode & 0o777 == 0o640
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["report.md", "results.json"]


@pytest.mark.usefixtures("one_thread")
def test_a_checkpoint_that_cannot_be_written_is_one_line(cartpole_ppo_path, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    err = fails_in_one_line(
        [
            "defend",
            str(cartpole_ppo_path),
            "--filter",
            "gaussian_noise:sigma=0.1",
            "--out",
            str(tmp_path / "afile" / "d"),
            "--episodes",
            "1",
        ],
        capsys,
    )
    assert "cannot write" in err
    err = fails_in_one_line(["quantize", str(cartpole_ppo_path), "--out", "/proc/q", "--episodes", "1"], capsys)
    assert "cannot write" in err


def test_weights_with_nan_or_inf_are_never_written(tiny_runs, tmp_path):
    """A diverged agent is refused in one line naming the tensor, and nothing is left behind."""
    agent = rllab.load(tiny_runs[("ppo", "CartPole-v1")])
    name, param = next(iter(agent.named_parameters()))
    with torch.no_grad():
        param.view(-1)[0] = float("nan")
    with pytest.raises(RllabError, match=f"tensor '{name}'.* holds NaN or inf") as info:
        agent.save(tmp_path / "diverged")
    assert "\n" not in str(info.value) and not (tmp_path / "diverged").exists()
