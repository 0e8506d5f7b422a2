import json
import shutil
from importlib import resources

import pytest
import yaml

from rllab import hyperparams as hp_lib
from rllab.algos import ALGOS
from rllab.cli import main
from rllab.errors import RllabError
from rllab.nn.policies import POLICY_CLASSES, policy_kwargs_to_sb3
from rllab.training import make_vec_env


def _shipped():
    for algo in ALGOS:
        table = yaml.safe_load(resources.files("rllab.hyperparams").joinpath(f"{algo}.yml").read_text())
        for env_id in table:
            yield algo, env_id


@pytest.mark.parametrize("algo,env_id", list(_shipped()))
def test_every_shipped_block_builds_its_algorithm(algo, env_id):
    hp = hp_lib.resolve(algo, env_id)
    lab, kwargs = hp_lib.split(hp)
    assert lab["n_timesteps"] > 0 and lab["n_envs"] > 0
    env = "CartPole-v1" if env_id == "default" else env_id
    venv = make_vec_env(env, 1, 0, {}, [])
    policy = POLICY_CLASSES["DQNPolicy" if algo == "dqn" else "ActorCriticPolicy"]
    pk = dict(lab.get("policy_kwargs") or {})
    if env.startswith("Catch"):
        pk.setdefault("features_extractor", "small_cnn")
    ALGOS[algo](policy, venv, policy_kwargs=policy_kwargs_to_sb3(pk), device="cpu", **kwargs)


def test_linear_schedule_and_precedence(tmp_path):
    f = tmp_path / "h.yml"
    f.write_text("learning_rate: lin_0.5\nn_steps: 7\n")
    hp = hp_lib.resolve("ppo", "CartPole-v1", f, ["n_steps=9"])
    assert hp["n_steps"] == 9 and hp["n_epochs"] == 20  # --set > file > shipped
    _, kwargs = hp_lib.split(hp)
    assert kwargs["learning_rate"](1.0) == pytest.approx(0.5) and kwargs["learning_rate"](0.0) == 0.0


def test_bad_values_are_user_errors(tmp_path):
    f = tmp_path / "h.yml"
    f.write_text("learning_rate: [unclosed\n")
    with pytest.raises(RllabError, match="cannot parse"):
        hp_lib.resolve("ppo", "CartPole-v1", f)
    with pytest.raises(RllabError, match="bad schedule"):
        hp_lib.split({"learning_rate": "lin_x"})


def test_lab_reuses_finished_runs_and_writes_a_summary(tmp_path, cartpole_ppo_path, catch_ppo_path, capsys):
    shutil.copytree(cartpole_ppo_path, tmp_path / "ppo-CartPole-v1-s0")
    shutil.copytree(catch_ppo_path, tmp_path / "ppo-Catch-v0-s0")
    assert main(["lab", "--out", str(tmp_path), "--episodes", "5", "--attack-episodes", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("reusing the finished run") == 2
    summary = (tmp_path / "summary.md").read_text()
    assert "CartPole-v1" in summary and "Catch-v0" in summary
    assert f"{tmp_path}/summary.md" in out
    # the main job ends in an attack report per agent, summarised beside the clean figures
    attacked = [ln for ln in summary.splitlines() if ln.endswith("report.html |")]
    assert len(attacked) == 6  # 3 eps per agent
    for env_id in ("CartPole-v1", "Catch-v0"):
        card = json.loads((tmp_path / f"ppo-{env_id}-s0" / "attacks" / "lab" / "results.json").read_text())
        assert card["episodes"] == 2 and len(card["results"]) >= 10  # the standard suite ...
        assert not any(n.startswith("torchattacks") for n in card["results"])  # ... without its cross-checks
        assert (tmp_path / f"ppo-{env_id}-s0" / "attacks" / "lab" / "report.html").exists()
        rows = [[c.strip() for c in ln.split("|")[1:-1]] for ln in attacked if ln.startswith(f"| {env_id} |")]
        assert len(rows) == len(card["threat_model"]["eps"])
        for e, (_, _, _, noise, worst_cell, by, _) in zip(card["threat_model"]["eps"], rows, strict=True):
            worst = min(r[f"{e:g}"]["mean_return"] for r in card["results"].values())  # noise included
            assert worst_cell == f"{worst:.3g}" and card["results"][by][f"{e:g}"]["mean_return"] == worst
            assert noise == f"{card['results']['noise'][f'{e:g}']['mean_return']:.3g}"
    # run again: the attack results are reused; --no-attack trains and evaluates only
    assert main(["lab", "--out", str(tmp_path), "--episodes", "5", "--attack-episodes", "2"]) == 0
    assert capsys.readouterr().out.count("reusing the attack results") == 2
    assert main(["lab", "--out", str(tmp_path), "--episodes", "5", "--no-attack"]) == 0
    assert "Under attack" not in (tmp_path / "summary.md").read_text()


def test_lab_keeps_runs_per_seed(tmp_path, cartpole_ppo_path, monkeypatch, capsys):
    """--seed 1 does not reuse the seed-0 agents: its runs are ppo-ENV-s1, trained with seed 1."""
    import rllab.training

    shutil.copytree(cartpole_ppo_path, tmp_path / "ppo-CartPole-v1-s0")
    trained = []

    def fake_train(algo, env_id, seed, out):
        trained.append((env_id, seed, out))
        raise RllabError("stop here")

    monkeypatch.setattr(rllab.training, "train", fake_train)
    assert main(["lab", "--out", str(tmp_path), "--seed", "1", "--no-attack"]) == 2
    assert trained == [("CartPole-v1", 1, tmp_path / "ppo-CartPole-v1-s1")]
    # a folder named for seed 1 that holds a seed-0 run is not taken for one
    shutil.copytree(cartpole_ppo_path, tmp_path / "ppo-CartPole-v1-s1")
    assert main(["lab", "--out", str(tmp_path), "--seed", "1", "--no-attack"]) == 2
    assert "trained with seed 0, not --seed 1" in capsys.readouterr().err
    assert len(trained) == 1


@pytest.mark.slow
def test_lab_from_scratch(tmp_path, capsys):
    assert main(["lab", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "[lab] results:" in out


def test_a_file_keyed_by_another_env_id_says_so(tmp_path):
    f = tmp_path / "hp.yml"
    f.write_text("Acrobot-v1:\n  gamma: 0.9\nMountainCar-v0:\n  gamma: 0.8\n")
    with pytest.raises(RllabError, match="holds hyperparameters for Acrobot-v1, MountainCar-v0, not CartPole-v1"):
        hp_lib.resolve("ppo", "CartPole-v1", f)
    f.write_text("CartPole-v1:\n  gamma: 0.9\nAcrobot-v1:\n  gamma: 0.8\n")
    assert hp_lib.resolve("ppo", "CartPole-v1", f)["gamma"] == 0.9
    f.write_text("gamma: 0.7\npolicy_kwargs: {net_arch: [8]}\n")  # unkeyed: the settings themselves
    assert hp_lib.resolve("ppo", "CartPole-v1", f)["gamma"] == 0.7
