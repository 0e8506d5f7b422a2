"""Domain-adversarial adaptation of an agent to a shifted domain (Ganin et al. 2016, "DANN").

The source domain is the environment the agent was trained in; the target is the same task
seen differently (an observation shift, another rendering, distractors), with the same
observation and action spaces. No target reward is used. The adapted network is trained on

* a task loss on *source* states: the frozen source agent's action distribution (KL, as in
  distillation; Q-values and the critic by relative squared error), so behaviour where the
  agent was trained is kept;
* a domain loss on the representation: a domain classifier learns to tell source from target
  features, and the feature extractor learns to make them indistinguishable, either through
  a gradient-reversal layer (``grl``: minimax on the classifier's cross-entropy, Ganin et al.
  2016) or by pushing the classifier's output towards 1/2 (``confusion``: Tzeng et al. 2015, whose gradient does
  not vanish once the classifier is confident).

The weight ``lambda_p`` follows Ganin et al.'s ramp ``coef * (2 / (1 + exp(-10 p)) - 1)``; the
network's learning rate decays linearly to zero and the saved weights are an exponential
moving average of the training weights: the game oscillates, and where it happened to stop
decided whether a Catch agent was adapted (at a pixel offset of 100/255: 1 of 3 seeds failed
without the two, 2 of 6 runs with the decay alone, none of 8 seeds with both).

The classifier sees both domains visited the same way (the same random actions from the same
reset seeds), so the two sets differ by the shift alone; the task loss also sees the states the
agent visits itself. The domains are aligned at the first hidden layer by default. The summary
reports returns in both domains before and after and the domain gap: the held-out accuracy of
a fresh classifier trained on the frozen features, and the proxy A-distance ``2 (1 - 2 err)``
(Ben-David et al. 2010), before and after.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch as th
import torch.nn as nn
import torch.nn.functional as F
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.preprocessing import preprocess_obs
from stable_baselines3.common.torch_layers import FlattenExtractor
from tqdm.auto import tqdm

from rllab.agent import Agent
from rllab.environment import describe_domain, with_domain
from rllab.errors import RllabError
from rllab.evaluation import observation_stats, run_episodes
from rllab.nn.build import clone_module
from rllab.nn.policies import ACTIVATIONS
from rllab.parsing import plural
from rllab.transforms.distill import collect_states, distillation_loss, student_output
from rllab.transforms.lineage import offspring, record

LOSSES = ("grl", "confusion")
ALIGN = ("auto", "first", "extractor", "latent")
EMA_DECAY = 0.99  # of the saved weights (Yazici et al. 2019: averaging stabilises adversarial training)


# --------------------------------------------------------------- the pieces
class _ReverseGradient(th.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: th.Tensor, scale: float) -> th.Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx: Any, grad: th.Tensor) -> tuple[th.Tensor, None]:
        return -ctx.scale * grad, None


def reverse_gradient(x: th.Tensor, scale: float = 1.0) -> th.Tensor:
    """Identity forward; the gradient is multiplied by ``-scale`` on the way back (Ganin et al. 2016)."""
    return _ReverseGradient.apply(x, scale)


def ganin_schedule(progress: float, coef: float) -> float:
    """``coef * (2 / (1 + exp(-10 p)) - 1)``: 0 at the start, ``coef`` by the end (Ganin et al. 2016, §5.2.2)."""
    return coef * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)


def _extractor(agent: Agent) -> nn.Module:
    policy = agent.policy
    if isinstance(policy, ActorCriticPolicy):
        return policy.features_extractor if policy.share_features_extractor else policy.pi_features_extractor
    return policy.q_net.features_extractor  # DQN


def _first_layer(agent: Agent) -> nn.Sequential | None:
    """The network's first layer and its activation (on SB3-preprocessed input), or None if it has no such layer."""
    policy, extractor = agent.policy, _extractor(agent)
    if isinstance(extractor, FlattenExtractor):
        net = policy.mlp_extractor.policy_net if isinstance(policy, ActorCriticPolicy) else policy.q_net.q_net
        prefix: list[nn.Module] = [nn.Flatten()]
    else:
        net, prefix = getattr(extractor, "cnn", None), []
    if not isinstance(net, nn.Sequential):
        return None
    activations = tuple(ACTIVATIONS.values()) + (nn.Sigmoid,)
    for i, m in enumerate(net):
        if isinstance(m, activations):
            return nn.Sequential(*prefix, *net[: i + 1])
    return None


def align_point(agent: Agent, align: str = "auto") -> str:
    """Where the domains are aligned: ``first`` (the first hidden layer) unless asked otherwise.

    An observation shift is a low-level change, and the first layer can undo it on its own (a
    pixel offset, by thresholding); every layer after it then sees the same input in both
    domains. Aligning deeper asks later layers to forget the shift while keeping the actions: on
    three shifted Catch domains, aligning the CNN's output instead brought the mean target catch
    rate to 0.73 / 0.94 / 0.76 against 1.00 / 1.00 / 0.91 (bench/results/adapt_acceptance.md),
    and the last hidden layer made an agent worse in an early trial (0.37 -> 0.16).
    """
    if align not in ALIGN:
        raise RllabError(f"unknown --align {align!r}; use one of {', '.join(ALIGN)}")
    has_weights = any(True for _ in _extractor(agent).parameters())
    if align == "auto":
        return "first" if _first_layer(agent) is not None else "extractor" if has_weights else "latent"
    if align == "first" and _first_layer(agent) is None:
        raise RllabError("cannot find this agent's first layer and activation; use --align extractor or latent")
    if align == "extractor" and not has_weights:
        raise RllabError("this agent's feature extractor has no weights (flatten); use --align first or latent")
    return align


def domain_features(agent: Agent, obs: th.Tensor, where: str) -> th.Tensor:
    """The representation the domain classifier sees (``where`` from ``align_point``)."""
    if where == "latent":
        return agent.features(obs)
    policy = agent.policy
    x = agent.preprocess(obs)
    if where == "first":
        layer = _first_layer(agent)
        assert layer is not None
        return layer(preprocess_obs(x, policy.observation_space, policy.normalize_images)).flatten(1)
    if isinstance(policy, ActorCriticPolicy):
        return policy.extract_features(x, _extractor(agent))
    return policy.q_net.extract_features(x, _extractor(agent))


def domain_classifier(features: int, hidden: int = 64) -> nn.Sequential:
    """A small MLP scoring features as target (positive) or source (negative)."""
    return nn.Sequential(
        nn.Linear(features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
    )


def task_loss(student: Agent, teacher: Agent, obs: th.Tensor) -> th.Tensor:
    """How far the student is from the frozen source agent on (source) states."""
    if student.has_q:
        with th.no_grad():
            q_t = teacher.q_values(obs)
        return F.mse_loss(student.q_values(obs), q_t) / (q_t.pow(2).mean() + 1e-6)
    with th.no_grad():
        target = student_output(teacher, obs)
    loss = distillation_loss(student_output(student, obs), target)
    if student.has_critic:
        with th.no_grad():
            v_t = teacher.value(obs)
        loss = loss + F.mse_loss(student.value(obs), v_t) / (v_t.pow(2).mean() + 1e-6)
    return loss


def domain_gap(
    agent: Agent,
    source: np.ndarray,
    target: np.ndarray,
    where: str,
    steps: int = 300,
    seed: int = 0,
) -> dict[str, float]:
    """Held-out accuracy of a fresh classifier telling the domains apart from the agent's frozen features.

    The first 80% of each array trains it, the rest tests it. ``proxy_a_distance`` is
    ``2 (1 - 2 err)`` with the held-out error ``err`` capped at 1/2 (Ben-David et al. 2010):
    2 when the domains are perfectly separable, 0 when they cannot be told apart.
    """
    gen = th.Generator().manual_seed(seed)
    with th.no_grad():  # in chunks: 10k Atari-size frames as float would take gigabytes at once
        fs, ft = (
            th.cat([domain_features(agent, agent.as_tensor(x[i : i + 1024]), where) for i in range(0, len(x), 1024)])
            for x in (source, target)
        )
    ns, nt = int(0.8 * len(fs)), int(0.8 * len(ft))
    x_train, y_train = th.cat([fs[:ns], ft[:nt]]), th.cat([th.zeros(ns), th.ones(nt)])
    x_test, y_test = th.cat([fs[ns:], ft[nt:]]), th.cat([th.zeros(len(fs) - ns), th.ones(len(ft) - nt)])
    with th.random.fork_rng(devices=[]):
        th.manual_seed(seed)
        clf = domain_classifier(fs.shape[1]).to(x_train.device)
    opt = th.optim.Adam(clf.parameters(), lr=1e-3)
    for _ in range(steps):
        idx = th.randint(len(x_train), (256,), generator=gen)
        loss = F.binary_cross_entropy_with_logits(clf(x_train[idx]).squeeze(-1), y_train[idx].to(x_train))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with th.no_grad():
        pred = (clf(x_test).squeeze(-1) > 0).float().cpu()
    accuracy = float((pred == y_test).float().mean())
    err = min(1.0 - accuracy, 0.5)
    return {"accuracy": accuracy, "proxy_a_distance": 2.0 * (1.0 - 2.0 * err)}


# ------------------------------------------------------------------ domains
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


def _random_behaviour(agent: Agent, seed: int):
    """Uniformly random actions from a seeded copy of the action space: the same sequence on every call."""
    space = copy.deepcopy(agent.action_space)
    space.seed(seed)
    return lambda batch: np.stack([space.sample() for _ in range(len(batch))])


def _behaviour(agent: Agent, explore: float, rng: np.random.Generator):
    """The source agent's own actions, with a random one with probability ``explore``."""
    random = _random_behaviour(agent, int(rng.integers(2**31)))

    def act(batch: np.ndarray) -> np.ndarray:
        actions = agent.act(batch)
        if explore <= 0:
            return actions
        pick = (rng.random(len(batch)) < explore).reshape((-1,) + (1,) * (actions.ndim - 1))
        return np.where(pick, random(batch).reshape(actions.shape), actions)

    return act


def _mean_return(agent: Agent, episodes: int, seed: int) -> float:
    return float(np.mean(run_episodes(agent, episodes, seed=seed).returns))


# --------------------------------------------------------------------- main
@dataclass
class AdaptResult:
    """What adaptation measured: mean returns in both domains before and after, the domain gap before and
    after, and the training curves (``summary`` is what ``agent.json["adaptation"]`` stores)."""

    summary: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        """The figures the lineage step stores (the summary without its training curves)."""
        return {k: self.summary[k] for k in ("mean_return", "domain_gap_before", "domain_gap_after")}


def adapt(
    source: Agent,
    *,
    target_env: str | None = None,
    target_env_kwargs: dict[str, Any] | None = None,
    target_wrappers: list[dict[str, Any]] | None = None,
    steps: int = 2000,
    coef: float = 1.0,
    loss: str = "confusion",
    align: str = "auto",
    states: int = 10_000,
    explore: float = 0.3,
    lr: float = 1e-3,
    batch_size: int = 256,
    seed: int = 0,
    eval_episodes: int = 50,
    progress: bool = True,
) -> tuple[Agent, AdaptResult]:
    """A copy of ``source`` adapted to a target domain without target rewards.

    The new agent's environment is the target domain, its lineage names the source, and
    ``agent.spec["adaptation"]`` holds the summary (returns in both domains before and after,
    domain gap before and after).
    """
    if loss not in LOSSES:
        raise RllabError(f"unknown --loss {loss!r}; use one of {', '.join(LOSSES)}")
    for name, value, low in (("--steps", steps, 1), ("--states", states, 100), ("--batch-size", batch_size, 1)):
        if value < low:
            raise RllabError(f"{name} must be at least {low}, got {value}")
    if coef < 0 or lr <= 0 or not 0 <= explore <= 1:
        raise RllabError("need --coef >= 0, --lr > 0 and 0 <= --explore <= 1")
    if source.spec.get("quantization"):
        raise RllabError("a quantised checkpoint cannot be trained; adapt its float parent, then quantise")
    if source.defenses:
        raise RllabError("adapt the undefended agent, then put the defense in front with rllab defend")
    tspec = target_spec(source.spec, target_env, target_env_kwargs, target_wrappers)
    where = align_point(source, align)
    params = {
        "method": "dann",
        "source_env": copy.deepcopy(source.spec["env"]),
        "target_env": copy.deepcopy(tspec["env"]),
        "loss": loss,
        "align": where,
        "coef": coef,
        "steps": steps,
        "states": states,
        "explore": explore,
        "lr": lr,
        "batch_size": batch_size,
        "ema_decay": EMA_DECAY,
        "seed": seed,
    }
    student = offspring(source, clone_module(source.policy))
    student.spec["env"] = tspec["env"]
    source_in_target = Agent(tspec, source.policy).copy_front_from(source)  # the unadapted agent in the target
    student.make_env().close()  # a target the checkpoint's spaces do not fit fails here, in one line

    th.manual_seed(seed)
    rng = np.random.default_rng(seed)
    # The task loss keeps the agent's behaviour on the source states it visits itself.
    own = collect_states(_behaviour(source, explore, rng), source, states, seed=seed)
    # The classifier sees both domains visited the same way: the same random actions from the same reset
    # seeds, so the two sets differ by the shift alone. (Visited with the agent's own actions, target states
    # would also differ by how badly the unadapted agent plays there, and hiding that from the classifier
    # would erase what the policy needs: where the ball is relative to the paddle, say.)
    xs = collect_states(_random_behaviour(source, seed), source, states, seed=seed + 50_000)
    xt = collect_states(_random_behaviour(source, seed), source_in_target, states, seed=seed + 50_000)
    order = rng.permutation(min(len(xs), len(xt)))
    xs, xt = xs[order], xt[order]
    train_s, train_t = xs[: int(0.8 * len(xs))], xt[: int(0.8 * len(xt))]  # the rest measures the domain gap
    task_states = np.concatenate([own, train_s])
    gap_before = domain_gap(source, xs, xt, where, seed=seed)  # its 80/20 split is train_*/held-out

    with th.no_grad():
        dim = domain_features(student, student.as_tensor(xs[:2]), where).shape[1]
    clf = domain_classifier(dim).to(student.device)
    opt = th.optim.Adam(student.policy.parameters(), lr=lr)
    clf_opt = th.optim.Adam(clf.parameters(), lr=lr)
    labels = th.cat([th.zeros(batch_size), th.ones(batch_size)]).to(student.device)
    student.train()
    history: list[dict[str, float]] = []
    average = clone_module(student.policy)  # the weights saved: an exponential moving average
    bar = tqdm(range(steps), desc="adapt", disable=not progress, leave=False)
    for step in bar:
        scale = ganin_schedule(step / steps, coef)
        for group in opt.param_groups:
            group["lr"] = lr * (1 - step / steps)  # the game settles instead of stopping mid-swing
        s = student.as_tensor(train_s[rng.integers(0, len(train_s), batch_size)])
        t = student.as_tensor(train_t[rng.integers(0, len(train_t), batch_size)])
        task = task_loss(student, source, student.as_tensor(task_states[rng.integers(0, len(task_states), batch_size)]))
        feats = domain_features(student, th.cat([s, t]), where)
        if loss == "grl":
            scores = clf(reverse_gradient(feats, scale)).squeeze(-1)
            dom = F.binary_cross_entropy_with_logits(scores, labels)
            opt.zero_grad()
            clf_opt.zero_grad()
            (task + dom).backward()
            opt.step()
            clf_opt.step()
        else:
            scores = clf(feats.detach()).squeeze(-1)
            dom = F.binary_cross_entropy_with_logits(scores, labels)
            clf_opt.zero_grad()
            dom.backward()
            clf_opt.step()
            confusion = F.binary_cross_entropy_with_logits(clf(feats).squeeze(-1), th.full_like(labels, 0.5))
            opt.zero_grad()
            (task + scale * confusion).backward()
            opt.step()
        with th.no_grad():
            for pe, pp in zip(average.parameters(), student.policy.parameters(), strict=True):
                pe.mul_(EMA_DECAY).add_(pp, alpha=1 - EMA_DECAY)
        if step % max(1, steps // 100) == 0 or step == steps - 1:
            acc = float(((scores > 0).float() == labels).float().mean())
            history.append({"step": step, "task": task.item(), "domain": dom.item(), "classifier_accuracy": acc})
            bar.set_postfix(task=f"{task.item():.4f}", clf_acc=f"{acc:.2f}")
    student.policy.load_state_dict(average.state_dict())
    student.eval()
    gap_after = domain_gap(student, xs, xt, where, seed=seed)

    eval_seed = seed + 1_000_000
    returns = {
        "target_before": _mean_return(source_in_target, eval_episodes, eval_seed),
        "target_after": _mean_return(student, eval_episodes, eval_seed),
        "source_before": _mean_return(source, eval_episodes, eval_seed),
        "source_after": _mean_return(
            Agent(copy.deepcopy(source.spec), student.policy).copy_front_from(source), eval_episodes, eval_seed
        ),
    }
    summary = {
        "source_env": describe_domain(source.spec["env"]),
        "target_env": describe_domain(tspec["env"]),
        "episodes": eval_episodes,
        "eval_seed": eval_seed,
        "mean_return": returns,
        "domain_gap_before": gap_before,
        "domain_gap_after": gap_after,
        "history": history,
    }
    result = AdaptResult(summary)
    student.spec["adaptation"] = summary
    student.spec["training"] = {"complete": True, "adapted_from": "" if source.path is None else str(source.path)}
    student.spec["obs_stats"] = (
        observation_stats(student, episodes=10, seed=seed + 10_000) if student.spec.get("obs_stats") else None
    )
    record(student, source, "adapt", params, result.to_json())
    return student, result


def summary_line(summary: dict[str, Any]) -> str:
    """One line of an adaptation summary: returns in both domains before -> after, and the domain gap."""
    r, b, a = summary["mean_return"], summary["domain_gap_before"], summary["domain_gap_after"]
    return (
        f"target {summary['target_env']}: return {r['target_before']:.2f} -> {r['target_after']:.2f}; "
        f"source {summary['source_env']}: {r['source_before']:.2f} -> {r['source_after']:.2f} "
        f"({plural(summary['episodes'], 'episode')}); "
        f"domain classifier accuracy {b['accuracy']:.2f} -> {a['accuracy']:.2f}"
    )
