import base64
import json
import os
import zipfile

import cloudpickle
import numpy as np
import pytest
from stable_baselines3 import A2C, DQN, PPO

import rllab
from rllab.cli import main
from rllab.errors import RllabError
from rllab.sb3_import import import_sb3


class _Payload:
    """Unpickling this object creates a file: proof that code ran."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _poison(zip_path, out_path, marker):
    """Copy an SB3 zip, replacing the pickled policy_class in `data` with a payload that runs code."""
    with zipfile.ZipFile(zip_path) as src, zipfile.ZipFile(out_path, "w") as dst:
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename == "data":
                data = json.loads(content)
                data["policy_class"][":serialized:"] = base64.b64encode(cloudpickle.dumps(_Payload(marker))).decode()
                content = json.dumps(data).encode()
            dst.writestr(item, content)
    return out_path


@pytest.mark.parametrize(
    "cls,env_id,kwargs",
    [
        (PPO, "CartPole-v1", {"n_steps": 64, "batch_size": 64, "policy_kwargs": {"net_arch": [32, 32]}}),
        (
            A2C,
            "Pendulum-v1",
            {"policy_kwargs": {"net_arch": {"pi": [16], "vf": [24]}, "activation_fn": __import__("torch").nn.ReLU}},
        ),
        (DQN, "CartPole-v1", {"learning_starts": 10, "policy_kwargs": {"net_arch": [48]}}),
        (PPO, "Catch-v0", {"n_steps": 32, "batch_size": 32}),
    ],
)
def test_imported_agent_acts_exactly_like_the_original(tmp_path, cls, env_id, kwargs):
    import envs  # noqa: F401

    policy = "CnnPolicy" if env_id == "Catch-v0" else "MlpPolicy"
    if env_id == "Catch-v0":
        from rllab.nn.policies import SmallCNN

        kwargs["policy_kwargs"] = {"features_extractor_class": SmallCNN}
    model = cls(policy, env_id, seed=0, **kwargs)
    model.learn(200)
    model.save(tmp_path / "model.zip")
    agent = import_sb3(tmp_path / "model.zip", env_id, tmp_path / "imported")
    agent = rllab.load(tmp_path / "imported")
    space = agent.observation_space
    space.seed(1)
    obs = np.stack([space.sample() for _ in range(64)])
    expected, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(agent.act(obs), expected)
    assert agent.spec["lineage"][0]["transform"] == "import-sb3"
    if agent.is_image:  # pixel-unit agents keep no per-pixel statistics (budgets are in k/255)
        assert agent.spec["obs_stats"] is None
    else:
        assert agent.spec["obs_stats"]["steps"] > 0


def test_pickled_payload_in_data_is_never_executed(tmp_path):
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0)
    model.save(tmp_path / "clean.zip")
    marker = tmp_path / "pwned"
    poisoned = _poison(tmp_path / "clean.zip", tmp_path / "poisoned.zip", marker)
    # The payload is real: SB3's own loader runs it.
    try:
        PPO.load(poisoned)
    except Exception:  # noqa: BLE001  (the payload is not a class, so SB3 fails after running it)
        pass
    assert marker.exists(), "the test payload must be live for this test to prove anything"
    marker.unlink()
    agent = import_sb3(poisoned, "CartPole-v1", tmp_path / "safe")
    assert not marker.exists()
    expected, _ = model.predict(np.zeros((3, 4), dtype=np.float32), deterministic=True)
    np.testing.assert_array_equal(agent.act(np.zeros((3, 4), dtype=np.float32)), expected)


def test_pickle_in_weights_is_refused(tmp_path):
    import torch

    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0)
    model.save(tmp_path / "clean.zip")
    marker = tmp_path / "pwned"
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(tmp_path / "clean.zip") as src, zipfile.ZipFile(bad, "w") as dst:
        for item in src.infolist():
            content = src.read(item.filename)
            if item.filename == "policy.pth":
                import io

                buf = io.BytesIO()
                torch.save({"x": _Payload(str(marker))}, buf)
                content = buf.getvalue()
            dst.writestr(item, content)
    with pytest.raises(RllabError, match="not plain tensors"):
        import_sb3(bad, "CartPole-v1", tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_import_errors_are_one_line(tmp_path, capsys):
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0)
    model.save(tmp_path / "m.zip")
    assert main(["import-sb3", str(tmp_path / "m.zip"), "--env", "Acrobot-v1", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "does not match 'Acrobot-v1'" in err and err.count("\n") == 1
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    assert main(["import-sb3", str(tmp_path / "junk.zip"), "--env", "CartPole-v1", "--out", str(tmp_path / "o")]) == 2
    assert "cannot read" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_model_of_a_channel_last_image_env_imports_and_acts_alike(tmp_path):
    """SB3 trains an HWC env through VecTransposeImage and stores the CHW space; the import must accept it."""
    import gymnasium as gym
    import torch

    from rllab.nn.policies import SmallCNN
    from tests.hwc_env import make_hwc_catch

    if "CatchHWC-v0" not in gym.registry:
        gym.register("CatchHWC-v0", entry_point=make_hwc_catch)
    model = PPO(
        "CnnPolicy",
        "CatchHWC-v0",
        n_steps=32,
        batch_size=32,
        seed=0,
        policy_kwargs={"features_extractor_class": SmallCNN},
    )
    assert model.observation_space.shape[0] == 3  # what the zip records: channels first
    model.learn(64)
    with torch.no_grad():  # a sharper head, so that random frames get different actions
        model.policy.action_net.weight.copy_(
            torch.randn(model.policy.action_net.weight.shape, generator=torch.Generator().manual_seed(0))
        )
    model.save(tmp_path / "model.zip")
    import_sb3(tmp_path / "model.zip", "CatchHWC-v0", tmp_path / "imported")
    agent = rllab.load(tmp_path / "imported")
    assert agent.observation_space.shape[-1] == 3 and agent.transpose_image
    env = agent.make_env()  # frames from the game (uniform noise frames all look alike to a CNN)
    frames = [env.reset(seed=1)[0]]
    for t in range(63):
        o, _, term, trunc, _ = env.step(t % 3)
        frames.append(env.reset(seed=2 + t)[0] if term or trunc else o)
    env.close()
    obs = np.stack(frames)
    expected, _ = model.predict(obs, deterministic=True)
    assert len(set(expected.tolist())) > 1  # the comparison means something
    np.testing.assert_array_equal(agent.act(obs), expected)
    sb3_logits = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0]).distribution.logits
    np.testing.assert_allclose(agent.action_dist(obs).logits.detach(), sb3_logits.detach(), atol=1e-5)


def test_squashed_output_policy_is_refused(tmp_path, capsys):
    model = PPO(
        "MlpPolicy",
        "Pendulum-v1",
        use_sde=True,
        n_steps=64,
        batch_size=64,
        seed=0,
        policy_kwargs={"squash_output": True},
    )
    model.save(tmp_path / "model.zip")
    with pytest.raises(RllabError, match="squash_output"):
        import_sb3(tmp_path / "model.zip", "Pendulum-v1", tmp_path / "imported")
    assert not (tmp_path / "imported").exists()
    assert main(["import-sb3", str(tmp_path / "model.zip"), "--env", "Pendulum-v1", "--out", str(tmp_path / "i")]) != 0
    err = capsys.readouterr().err.strip()
    assert "squash_output" in err and len(err.splitlines()) == 1
    # squash_output=False is the default, and imports
    plain = PPO("MlpPolicy", "Pendulum-v1", n_steps=64, batch_size=64, seed=0, policy_kwargs={"squash_output": False})
    plain.save(tmp_path / "plain.zip")
    agent = import_sb3(tmp_path / "plain.zip", "Pendulum-v1", tmp_path / "plain")
    obs = np.zeros((4, 3), np.float32)
    np.testing.assert_allclose(agent.act(obs), plain.predict(obs, deterministic=True)[0], atol=1e-6)


def test_import_closes_every_environment_it_opens(tmp_path, monkeypatch):
    import rllab.environment
    import rllab.sb3_import

    opened = []
    real_make_env = rllab.environment.make_env

    def tracking_make_env(*args, **kwargs):
        env = real_make_env(*args, **kwargs)
        close = env.close
        record = {"closed": False}

        def tracked_close():
            record["closed"] = True
            close()

        env.close = tracked_close
        opened.append(record)
        return env

    monkeypatch.setattr(rllab.sb3_import, "make_env", tracking_make_env)
    monkeypatch.setattr(rllab.agent, "make_env", tracking_make_env)  # Agent.make_env and the rollouts it feeds
    model = PPO("MlpPolicy", "CartPole-v1", n_steps=64, batch_size=64, seed=0)
    model.save(tmp_path / "m.zip")
    import_sb3(tmp_path / "m.zip", "CartPole-v1", tmp_path / "o")
    assert opened and all(r["closed"] for r in opened), (
        f"{sum(not r['closed'] for r in opened)} of {len(opened)} left open"
    )
