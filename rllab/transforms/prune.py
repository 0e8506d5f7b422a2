"""Pruning an agent's networks, then fine-tuning it by distillation from the unpruned agent.

- Unstructured: global magnitude pruning (Han et al. 2015, "Learning both Weights and
  Connections") with ``torch.nn.utils.prune.global_unstructured`` over every linear and
  convolutional weight; the masks are made permanent, so the checkpoint holds exact zeros.
- Structured: whole hidden units of the actor and critic MLPs are removed and the weight
  matrices sliced, so the saved network is physically smaller and faster. A unit's
  importance is the L1 norm of its incoming weights (Li et al. 2017, "Pruning Filters for
  Efficient ConvNets") or, with ``importance="gradient"``, the Memory-Aware-Synapses score
  (Aljundi et al. 2018): ``E_x |d ||f(x)||^2 / d theta|`` summed over the unit's incoming
  weights and bias, with ``f`` the actor's logits (critic: the value).
- Iterative: ``K`` rounds of prune-then-fine-tune with sparsity following the cubic
  schedule of Zhu & Gupta (2017), ``s_k = s (1 - (1 - k/K)^3)``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn
from torch.nn.utils import prune as tprune
from tqdm.auto import tqdm

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.nn.build import clone_module, policy_observation_space
from rllab.nn.policies import build_policy
from rllab.training.build import ModelRecipe, build_model, split_hyperparams
from rllab.transforms.distill import collect_states, train_by_distillation
from rllab.transforms.lineage import offspring, record

IMPORTANCE = ("magnitude", "gradient")
FINETUNE = ("distill", "rl", "none")


def schedule(sparsity: float, rounds: int) -> list[float]:
    """Target sparsity after each of ``rounds`` rounds (Zhu & Gupta 2017, eq. 1, with t_0 = 0)."""
    return [sparsity * (1 - (1 - k / rounds) ** 3) for k in range(1, rounds + 1)]


def prunable(policy: nn.Module) -> list[tuple[nn.Module, str]]:
    """The linear and convolutional layers that act (a DQN's target network never does: it is left out)."""
    target = getattr(policy, "q_net_target", None) if isinstance(policy, DQNPolicy) else None
    skip = {id(m) for m in target.modules()} if target is not None else set()
    return [(m, "weight") for m in policy.modules() if isinstance(m, (nn.Linear, nn.Conv2d)) and id(m) not in skip]


def sync_target(policy: nn.Module) -> None:
    """A DQN's target network set to its (pruned) online network, so the checkpoint holds one network twice."""
    if isinstance(policy, DQNPolicy):
        policy.q_net_target.load_state_dict(policy.q_net.state_dict())


def weight_sparsity(policy: nn.Module) -> float:
    """Fraction of zero entries over all acting linear and convolutional weights (not a DQN's target network)."""
    weights = [m.weight for m, _ in prunable(policy)]
    total = sum(w.numel() for w in weights)
    return float(sum(int((w == 0).sum()) for w in weights) / max(total, 1))


def global_magnitude_prune(policy: nn.Module, sparsity: float) -> None:
    """Mask the smallest-magnitude weights, globally, until ``sparsity`` of all weights are masked.

    Re-applied pruning in torch ranks only still-unmasked entries, so the amount is
    converted into a fraction of what remains.
    """
    params = prunable(policy)
    total = sum(m.weight.numel() for m, _ in params)
    masked = sum(int((m.weight_mask == 0).sum()) if hasattr(m, "weight_mask") else 0 for m, _ in params)
    extra = round(sparsity * total) - masked
    if extra > 0:
        tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=int(extra))


def make_permanent(policy: nn.Module) -> None:
    """Fold the pruning masks into the weights (exact zeros) and drop the reparametrisation."""
    for m, name in prunable(policy):
        if tprune.is_pruned(m) and hasattr(m, f"{name}_mask"):
            tprune.remove(m, name)


# ------------------------------------------------------------------ structured
def mlp_linears(net: nn.Sequential) -> list[nn.Linear]:
    """The linear layers of an MLP, in order."""
    return [m for m in net if isinstance(m, nn.Linear)]


def feature_linear(policy: ActorCriticPolicy) -> nn.Linear | None:
    """The final linear layer of a shared CNN extractor (SmallCNN, NatureCNN: ``linear[0]``), if any.

    Its output units are the ``features_dim`` features, prunable like hidden units.
    """
    ext = policy.features_extractor
    lin = getattr(ext, "linear", None)
    if policy.share_features_extractor and isinstance(lin, nn.Sequential) and isinstance(lin[0], nn.Linear):
        return lin[0]
    return None


def unit_importance(agent: Agent, states: np.ndarray | None, method: str) -> dict[str, list[th.Tensor]]:
    """Importance of every hidden unit of the actor (``pi``) and critic (``vf``) MLPs."""
    policy = agent.policy
    assert isinstance(policy, ActorCriticPolicy)
    nets = {"pi": policy.mlp_extractor.policy_net, "vf": policy.mlp_extractor.value_net}
    feat = feature_linear(policy)
    if feat is not None:
        nets["features"] = nn.Sequential(feat)
    magnitude = {
        k: [lin.weight.detach().abs().sum(1) + lin.bias.detach().abs() for lin in mlp_linears(net)]
        for k, net in nets.items()
    }
    if method == "magnitude":
        return magnitude
    if method != "gradient":
        raise RllabError(f"unknown importance {method!r}; choose one of {', '.join(IMPORTANCE)}")
    assert states is not None
    # without a trained critic (a distilled student, REINFORCE without baseline) V gives no gradient
    # worth ranking by: the critic's units are ranked by magnitude
    critic = agent.has_critic and bool(mlp_linears(nets["vf"]))
    scores: dict[str, list[th.Tensor]] = {
        k: [th.zeros(lin.out_features) for lin in mlp_linears(net)] for k, net in nets.items()
    }
    x = th.as_tensor(states)
    for chunk in th.split(x, 1):  # MAS takes the gradient per sample, then averages its magnitude
        agent.zero_grad()
        out_pi = agent.logits(chunk).pow(2).sum()
        out_vf = agent.value(chunk).pow(2).sum() if critic else None
        out_pi.backward()
        for key in ("pi", "features"):  # the shared extractor's score is the actor's
            for i, lin in enumerate(mlp_linears(nets[key]) if key in nets else []):
                scores[key][i] += lin.weight.grad.abs().sum(1) + lin.bias.grad.abs()
        agent.zero_grad()
        if out_vf is not None:
            out_vf.backward()
            for i, lin in enumerate(mlp_linears(nets["vf"])):
                scores["vf"][i] += lin.weight.grad.abs().sum(1) + lin.bias.grad.abs()
    agent.zero_grad()
    out = {k: [s / len(x) for s in v] for k, v in scores.items()}
    if not critic:
        out["vf"] = magnitude["vf"]
    return out


def _slice_mlp(
    state: dict[str, th.Tensor], prefix: str, head: str, linear_idx: list[int], kept: list[th.Tensor]
) -> None:
    """Slice rows of each hidden layer and the matching input columns of the layer after it."""
    for i, (layer, idx) in enumerate(zip(linear_idx, kept, strict=True)):
        w, b = f"{prefix}.{layer}.weight", f"{prefix}.{layer}.bias"
        state[w] = state[w][idx]
        state[b] = state[b][idx]
        nxt = f"{prefix}.{linear_idx[i + 1]}.weight" if i + 1 < len(linear_idx) else f"{head}.weight"
        state[nxt] = state[nxt][:, idx]


def remove_units(
    agent: Agent, target: dict[str, list[int]], importance: dict[str, list[th.Tensor]]
) -> tuple[ActorCriticPolicy, dict[str, Any], dict[str, list[list[int]]]]:
    """A new, physically smaller policy keeping the ``target[key][i]`` most important units of each hidden layer.

    ``target`` holds a width per layer, as ``hidden_widths`` does (``pi``, ``vf``, and ``features``
    for a shared CNN extractor); a layer never grows. Returns the policy, its JSON kwargs
    (``net_arch`` with the new widths) and the kept indices.
    """
    policy = agent.policy
    assert isinstance(policy, ActorCriticPolicy)
    ext = policy.mlp_extractor
    nets = {
        "pi": (ext.policy_net, "mlp_extractor.policy_net", "action_net"),
        "vf": (ext.value_net, "mlp_extractor.value_net", "value_net"),
    }
    state = {k: v.detach().clone() for k, v in policy.state_dict().items()}
    kept: dict[str, list[list[int]]] = {}
    widths: dict[str, list[int]] = {}
    kwargs = copy.deepcopy(agent.spec["policy"].get("kwargs", {}))
    feat = feature_linear(policy)
    if feat is not None and "features" in importance:
        score = importance["features"][0]
        idx_f = th.sort(th.topk(score, _width(target["features"][0], score)).indices).values
        for alias in ("features_extractor", "pi_features_extractor", "vf_features_extractor"):
            for suffix in ("weight", "bias"):
                key = f"{alias}.linear.0.{suffix}"
                if key in state:
                    state[key] = state[key][idx_f]
        for net, prefix, head in nets.values():
            first = next((i for i, m in enumerate(net) if isinstance(m, nn.Linear)), None)
            consumer = f"{prefix}.{first}.weight" if first is not None else f"{head}.weight"
            state[consumer] = state[consumer][:, idx_f]
        kept["features"] = [idx_f.tolist()]
        kwargs["features_extractor_kwargs"] = {
            **kwargs.get("features_extractor_kwargs", {}),
            "features_dim": len(idx_f),
        }
    for key, (net, prefix, head) in nets.items():
        linear_idx = [i for i, m in enumerate(net) if isinstance(m, nn.Linear)]
        idx = []
        for width, score in zip(target[key], importance[key], strict=True):
            idx.append(th.sort(th.topk(score, _width(width, score)).indices).values)  # sorted: kept units keep order
        _slice_mlp(state, prefix, head, linear_idx, idx)
        kept[key] = [i.tolist() for i in idx]
        widths[key] = [len(i) for i in idx]
    kwargs["net_arch"] = widths
    new = build_policy("ActorCriticPolicy", policy_observation_space(agent.spec), agent.action_space, kwargs)
    assert isinstance(new, ActorCriticPolicy)
    new.load_state_dict(state)
    return new, kwargs, kept


def kept_width(width: int, sparsity: float) -> int:
    """Units a layer of ``width`` keeps at ``sparsity``: ceil((1 - sparsity) * width), at least 1.

    Rounded first, so float noise cannot add a unit ((1 - 0.7) * 10 is 3.0000000000000004).
    """
    return max(1, math.ceil(round((1 - sparsity) * width, 9)))


def _width(target: int, score: th.Tensor) -> int:
    return max(1, min(int(target), score.numel()))


def hidden_widths(agent: Agent) -> dict[str, list[int]]:
    """Widths of the actor's (``pi``) and critic's (``vf``) hidden layers, and ``features`` of a shared CNN."""
    ext = agent.policy.mlp_extractor
    out = {
        "pi": [m.out_features for m in mlp_linears(ext.policy_net)],
        "vf": [m.out_features for m in mlp_linears(ext.value_net)],
    }
    feat = feature_linear(agent.policy)
    if feat is not None:
        out["features"] = [feat.out_features]
    return out


# ---------------------------------------------------------------------- driver
@dataclass
class PruneResult:
    """What pruning reached: weight sparsity (unstructured) or the kept units and widths (structured),
    and each round's fine-tuning figures."""

    rounds: list[dict[str, Any]]
    weight_sparsity: float | None = None
    kept_units: dict[str, list[list[int]]] | None = None
    widths: dict[str, list[int]] | None = None
    original_widths: dict[str, list[int]] | None = None

    def to_json(self) -> dict[str, Any]:
        """The figures as the lineage step stores them (the ones this kind of pruning has)."""
        keys = ("kept_units", "widths", "original_widths") if self.kept_units is not None else ("weight_sparsity",)
        return {**{k: getattr(self, k) for k in keys}, "rounds": self.rounds}


def prune(
    teacher: Agent,
    sparsity: float = 0.9,
    *,
    structured: bool = False,
    importance: str = "magnitude",
    iterative: int = 1,
    finetune: str = "distill",
    steps: int = 10_000,
    epochs: int = 10,
    lr: float = 1e-3,
    temperature: float = 1.0,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Agent, PruneResult]:
    """A copy of ``teacher`` pruned to ``sparsity`` (of weights, or with ``structured`` of hidden units).

    Each of ``iterative`` rounds prunes to the scheduled sparsity, then (``finetune="distill"``)
    trains the survivors by distillation from the unpruned agent on ``steps`` states
    (teacher and DAgger data) for ``epochs`` epochs.
    """
    if not 0 < sparsity < 1:
        raise RllabError(f"--sparsity must be in (0, 1), got {sparsity}")
    if iterative <= 0:
        raise RllabError(f"--iterative must be positive, got {iterative}")
    if finetune not in FINETUNE:
        raise RllabError(f"unknown --finetune {finetune!r}; choose one of {', '.join(FINETUNE)}")
    if importance not in IMPORTANCE:
        raise RllabError(f"unknown --importance {importance!r}; choose one of {', '.join(IMPORTANCE)}")
    if teacher.spec.get("quantization"):
        raise RllabError("a quantised checkpoint cannot be pruned; prune its float parent, then quantise")
    if structured and not isinstance(teacher.policy, ActorCriticPolicy):
        where = teacher.path or "this checkpoint"
        raise RllabError(f"structured pruning works on actor-critic MLPs; {where} is a {teacher.algo} agent")
    th.manual_seed(seed)
    params: dict[str, Any] = {
        "sparsity": sparsity,
        "structured": structured,
        "importance": importance if structured else "magnitude",
        "iterative": iterative,
        "finetune": finetune,
        "steps": steps,
        "epochs": epochs,
        "lr": lr,
        "temperature": temperature,
        "seed": seed,
    }
    gen = th.Generator().manual_seed(seed)
    rounds = schedule(sparsity, iterative)
    history: list[dict[str, Any]] = []
    agent = offspring(teacher, clone_module(teacher.policy))
    if structured:
        original = hidden_widths(teacher)
        kept_total: dict[str, list[list[int]]] | None = None
        for k, target in enumerate(tqdm(rounds, desc="prune", disable=not progress, unit="round")):
            states = (
                collect_states(teacher.act, teacher, 2048, seed=seed + 7919 * (k + 1))
                if importance == "gradient"
                else None
            )
            scores = unit_importance(agent, states, importance)
            # each layer's width after this round: (1 - target) of its original width
            target_w = {key: [kept_width(w, target) for w in ws] for key, ws in original.items()}
            policy, kwargs, kept = remove_units(agent, target_w, scores)
            kept_total = (
                kept
                if kept_total is None
                else {
                    key: [[prev[i] for i in cur] for prev, cur in zip(kept_total[key], kept[key], strict=True)]
                    for key in kept
                }
            )
            agent = offspring(agent, policy, policy_kwargs=kwargs)
            history.append(_finetune(agent, teacher, finetune, steps, epochs, lr, temperature, seed + k, gen))
            history[-1]["widths"] = hidden_widths(agent)
        assert kept_total is not None
        result = PruneResult(history, None, kept_total, hidden_widths(agent), original)
    else:
        for k, target in enumerate(tqdm(rounds, desc="prune", disable=not progress, unit="round")):
            global_magnitude_prune(agent.policy, target)
            history.append(_finetune(agent, teacher, finetune, steps, epochs, lr, temperature, seed + k, gen))
            history[-1]["sparsity"] = weight_sparsity(agent.policy)
        make_permanent(agent.policy)
        sync_target(agent.policy)
        result = PruneResult(history, weight_sparsity(agent.policy))
    agent.spec["training"] = {**teacher.spec.get("training", {}), "complete": True}
    agent.spec["training"].pop("config", None)
    record(agent, teacher, "prune", params, result.to_json())
    return agent, result


def _finetune(
    agent: Agent,
    teacher: Agent,
    mode: str,
    steps: int,
    epochs: int,
    lr: float,
    temperature: float,
    seed: int,
    gen: th.Generator,
) -> dict[str, Any]:
    if mode == "none":
        return {}
    if mode == "rl":
        return rl_finetune(agent, teacher, steps, seed)
    critic = teacher.has_critic and agent.has_critic
    stats = train_by_distillation(
        agent,
        [teacher],
        "mixed",
        steps,
        temperature,
        rounds=2,
        epochs=epochs,
        lr=lr,
        batch_size=256,
        critic=critic,
        seed=seed,
        progress=False,
        desc="fine-tune",
    )
    return {"final_loss": stats["final_loss"]}


def rl_finetune(agent: Agent, teacher: Agent, steps: int, seed: int) -> dict[str, Any]:
    """Continue training ``agent`` with the algorithm and hyperparameters that trained ``teacher``.

    The pruned weights stay zero: the masks are re-attached to the SB3 model's policy, whose
    optimiser then updates only the surviving weights' effective values.
    """
    config = teacher.spec.get("training", {}).get("config")
    if not config or config.get("algo") not in ("ppo", "a2c", "reinforce"):
        raise RllabError("--finetune rl needs a parent trained by rllab with ppo, a2c or reinforce; use distill")
    lab, algo_kwargs = split_hyperparams(config["algo"], config["hyperparams"])
    if lab.get("normalize"):
        raise RllabError("--finetune rl does not support observation-normalised runs yet; use --finetune distill")
    recipe = ModelRecipe(
        config["algo"],
        config["env"],
        config["env_kwargs"],
        config["wrappers"],
        int(config["n_envs"]),
        algo_kwargs,
        "ActorCriticPolicy",
        agent.spec["policy"].get("kwargs", {}),  # the pruned architecture, not the teacher's
        transpose=agent.transpose_image,
    )
    model = build_model(recipe, seed, device="cpu")
    venv = model.get_env()
    masks = {n: m.weight_mask.clone() for n, m in agent.policy.named_modules() if hasattr(m, "weight_mask")}
    plain = {k: v for k, v in agent.policy.state_dict().items() if not k.endswith(("_orig", "_mask"))}
    for name in masks:
        plain[f"{name}.weight" if name else "weight"] = agent.policy.get_submodule(name).weight.detach().clone()
    model.policy.load_state_dict(plain)
    for name, mask in masks.items():
        tprune.custom_from_mask(model.policy.get_submodule(name), "weight", mask)
    model.learn(total_timesteps=steps, progress_bar=False)
    agent.policy.load_state_dict(model.policy.state_dict())
    venv.close()
    return {"rl_steps": int(model.num_timesteps)}
