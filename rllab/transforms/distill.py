"""Policy distillation (Rusu et al. 2016, "Policy Distillation"; Hinton et al. 2015).

A small student is trained to match a teacher's action distribution on states
visited by the teacher, by the student itself (DAgger, Ross et al. 2011: the
student acts, the teacher labels) or by both. Discrete actions use the
temperature-softened KL of Hinton et al. (2015), ``T^2 KL(softmax(z_t/T) ||
softmax(z_s/T))`` (the ``T^2`` keeps gradient magnitudes comparable across T);
continuous actions use the closed-form KL between diagonal Gaussians. Several
teachers form an ensemble whose distributions are averaged (a mixture for
discrete actions, a moment-matched Gaussian for continuous ones).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch as th
import torch.nn.functional as F
from stable_baselines3.common.policies import ActorCriticPolicy
from torch.distributions import Independent, Normal
from tqdm.auto import tqdm

from rllab.agent import Agent
from rllab.errors import RllabError
from rllab.evaluation import collect_observations
from rllab.nn.build import policy_observation_space
from rllab.nn.policies import build_policy
from rllab.transforms.lineage import offspring, provenance, record

DATA_MODES = ("teacher", "student", "mixed")


# ----------------------------------------------------------------- the losses
def softened_log_probs(logits: th.Tensor, temperature: float) -> th.Tensor:
    """``log softmax(logits / T)``: the temperature-softened distribution (Hinton et al. 2015, eq. 1)."""
    return F.log_softmax(logits / temperature, dim=-1)


def distillation_loss(
    student: th.Tensor | tuple[th.Tensor, th.Tensor],
    teacher: th.Tensor | tuple[th.Tensor, th.Tensor],
    temperature: float = 1.0,
) -> th.Tensor:
    """Mean distillation loss over a batch.

    Discrete: ``student``/``teacher`` are logits (batch, n); returns
    ``T^2 * KL(softmax(teacher/T) || softmax(student/T))`` (Hinton et al. 2015, eq. 2 and §2.1).
    Continuous: each is a ``(mean, std)`` pair of diagonal Gaussians; returns
    ``KL(N_teacher || N_student)`` summed over action dimensions, with the teacher's
    standard deviation multiplied by ``T`` (a softer target for ``T > 1``).
    """
    if temperature <= 0:
        raise RllabError(f"temperature must be positive, got {temperature}")
    if isinstance(student, tuple):
        assert isinstance(teacher, tuple)
        t_mean, t_std = teacher
        s_mean, s_std = student
        kl = th.distributions.kl_divergence(
            Independent(Normal(t_mean, t_std * temperature), 1), Independent(Normal(s_mean, s_std), 1)
        )
        return kl.mean()
    assert isinstance(teacher, th.Tensor)
    t_logp = softened_log_probs(teacher, temperature)
    s_logp = softened_log_probs(student, temperature)
    kl = (t_logp.exp() * (t_logp - s_logp)).sum(-1)
    return kl.mean() * temperature**2


def ensemble_target(
    teachers: Sequence[Agent], obs: th.Tensor, temperature: float = 1.0
) -> th.Tensor | tuple[th.Tensor, th.Tensor]:
    """The teachers' averaged distribution, as logits (discrete) or ``(mean, std)`` (continuous).

    Discrete: log of the mean softened probability, times ``T`` so that the loss's own
    division by ``T`` recovers the averaged softened distribution exactly.
    Continuous: the Gaussian with the mixture's mean and variance (moment matching).
    """
    with th.no_grad():
        if teachers[0].is_discrete:
            logps = th.stack([softened_log_probs(t.logits(obs), temperature) for t in teachers])
            return (th.logsumexp(logps, 0) - math.log(len(teachers))) * temperature
        dists = [gaussian(t, obs) for t in teachers]
        means = th.stack([m for m, _ in dists])
        second = th.stack([s**2 + m**2 for m, s in dists])
        mean = means.mean(0)
        return mean, (second.mean(0) - mean**2).clamp_min(1e-12).sqrt()


def gaussian(agent: Agent, obs: th.Tensor) -> tuple[th.Tensor, th.Tensor]:
    """Mean and standard deviation of a continuous agent's diagonal Gaussian action distribution."""
    dist = agent.action_dist(obs)
    base = dist.base_dist if isinstance(dist, Independent) else dist
    return base.mean, base.stddev


def student_output(student: Agent, obs: th.Tensor) -> th.Tensor | tuple[th.Tensor, th.Tensor]:
    """What the distillation loss compares: logits (discrete actions) or ``(mean, std)`` (continuous)."""
    return student.logits(obs) if student.is_discrete else gaussian(student, obs)


# ------------------------------------------------------------ data gathering
def collect_states(
    behaviour: Callable[[np.ndarray], np.ndarray],
    agent: Agent,
    steps: int,
    seed: int,
    n_envs: int = 8,
) -> np.ndarray:
    """``steps`` raw observations visited by ``behaviour`` (a batch policy) in the agent's environment."""
    return collect_observations(agent, steps=steps, seed=seed, policy=behaviour, n_envs=n_envs)


# --------------------------------------------------------------- the student
def student_kwargs(teacher: Agent, arch: Sequence[int], critic: bool, extra: dict[str, Any] | None) -> dict[str, Any]:
    """The teacher's JSON policy kwargs with a new hidden-layer architecture.

    Without critic distillation the student's value head is a single linear layer
    (``vf=[]``): SB3 always builds one, and the checkpoint marks it untrained.
    """
    kwargs = copy.deepcopy(teacher.spec["policy"].get("kwargs", {}))
    kwargs["net_arch"] = {"pi": [int(a) for a in arch], "vf": [int(a) for a in arch] if critic else []}
    kwargs.pop("share_features_extractor", None)
    for key, value in (extra or {}).items():
        kwargs[key] = value
    return kwargs


def fit(
    student: Agent,
    teachers: Sequence[Agent],
    states: np.ndarray,
    temperature: float,
    epochs: int,
    lr: float,
    batch_size: int,
    critic: bool,
    generator: th.Generator,
    parameters: list[th.nn.Parameter] | None = None,
) -> float:
    """Minibatch Adam on the distillation loss (plus value MSE with ``critic``); returns the last epoch's loss.

    Only the student's policy is trained (by default all its trainable parameters): the input
    defenses in front of it (a purifier) are the teacher's, and stay as they are.
    """
    params = parameters if parameters is not None else [p for p in student.policy.parameters() if p.requires_grad]
    opt = th.optim.Adam(params, lr=lr)
    x_all = th.as_tensor(states)
    with th.no_grad():
        targets = []
        values = []
        for chunk in th.split(x_all, 4096):
            targets.append(ensemble_target(teachers, chunk, temperature))
            if critic:
                values.append(th.stack([t.value(chunk) for t in teachers]).mean(0))
    if teachers[0].is_discrete:
        target_all: Any = th.cat(targets)
    else:
        target_all = (th.cat([m for m, _ in targets]), th.cat([s for _, s in targets]))
    value_all = th.cat(values) if critic else None
    student.train()
    last = float("nan")
    for _ in range(epochs):
        perm = th.randperm(len(x_all), generator=generator)
        total, n = 0.0, 0
        for idx in th.split(perm, batch_size):
            tgt = target_all[idx] if isinstance(target_all, th.Tensor) else (target_all[0][idx], target_all[1][idx])
            loss = distillation_loss(student_output(student, x_all[idx]), tgt, temperature)
            if critic and value_all is not None:
                loss = loss + F.mse_loss(student.value(x_all[idx]), value_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
            n += len(idx)
        last = total / max(n, 1)
    student.eval()
    return last


def train_by_distillation(
    student: Agent,
    teachers: Sequence[Agent],
    data: str,
    steps: int,
    temperature: float,
    rounds: int,
    epochs: int,
    lr: float,
    batch_size: int,
    critic: bool,
    seed: int,
    progress: bool = True,
    desc: str = "distill",
) -> dict[str, Any]:
    """Gather ``steps`` states over ``rounds`` rounds (dataset aggregation) and fit the student after each.

    Round 0 always follows the (first) teacher, since an untrained student visits
    useless states; later rounds follow the teacher, the student (DAgger) or, with
    ``mixed``, the student with probability 1/2 per environment step.
    """
    if data not in DATA_MODES:
        raise RllabError(f"unknown --data {data!r}; choose one of {', '.join(DATA_MODES)}")
    if steps <= 0 or rounds <= 0 or epochs <= 0:
        raise RllabError("steps, rounds and epochs must be positive")
    th.manual_seed(seed)
    rng = np.random.default_rng(seed)
    gen = th.Generator().manual_seed(seed)
    per_round = max(1, steps // rounds)
    buffer: list[np.ndarray] = []
    losses = []
    teacher = teachers[0]
    for r in tqdm(range(rounds), desc=desc, disable=not progress, unit="round"):
        mode = "teacher" if r == 0 else data

        def behaviour(batch: np.ndarray, mode: str = mode) -> np.ndarray:
            if mode == "teacher":
                return teacher.act(batch)
            if mode == "student":
                return student.act(batch)
            a_student, a_teacher = student.act(batch), teacher.act(batch)
            pick = (rng.random(len(batch)) < 0.5).reshape(-1, *([1] * (a_teacher.ndim - 1)))
            return np.where(pick, a_student, a_teacher)

        buffer.append(collect_states(behaviour, teacher, per_round, seed=seed + 100_000 * (r + 1)))
        losses.append(fit(student, teachers, np.concatenate(buffer), temperature, epochs, lr, batch_size, critic, gen))
    return {"final_loss": losses[-1], "loss_per_round": losses, "states": int(sum(len(b) for b in buffer))}


def new_student(teacher: Agent, kwargs: dict[str, Any]) -> ActorCriticPolicy:
    """An untrained actor-critic policy for the teacher's spaces (a DQN teacher's student is one too)."""
    policy = build_policy("ActorCriticPolicy", policy_observation_space(teacher.spec), teacher.action_space, kwargs)
    assert isinstance(policy, ActorCriticPolicy)
    return policy


def parse_arch(text: str | Sequence[int]) -> list[int]:
    """Hidden-layer widths from ``"16,16"`` or a sequence of integers, all positive."""
    if isinstance(text, str):
        try:
            arch = [int(x) for x in text.split(",") if x.strip()]
        except ValueError:
            raise RllabError(f"--arch expects comma-separated layer widths like 16,16; got {text!r}") from None
    else:
        arch = [int(x) for x in text]
    if any(a <= 0 for a in arch):
        raise RllabError(f"layer widths must be positive, got {arch}")
    return arch


@dataclass
class DistillResult:
    """What distillation measured: the last round's loss, the loss after each round, the states gathered."""

    final_loss: float
    loss_per_round: list[float]
    states: int

    def to_json(self) -> dict[str, Any]:
        """The figures as the lineage step stores them."""
        return asdict(self)


def distill(
    teachers: Agent | Sequence[Agent],
    arch: str | Sequence[int] = (16, 16),
    *,
    temperature: float = 1.0,
    data: str = "mixed",
    steps: int = 20_000,
    rounds: int = 5,
    epochs: int = 10,
    lr: float = 3e-3,
    batch_size: int = 256,
    critic: bool = False,
    policy_kwargs: dict[str, Any] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> tuple[Agent, DistillResult]:
    """Distil one teacher or an averaged ensemble into a new student with hidden layers ``arch``.

    A DQN teacher's Q-values act as logits, so ``softmax(Q / T)`` is the target (Rusu et al.
    use ``T = 0.01``); the student is an actor-critic policy network either way.
    ``policy_kwargs`` overrides further student settings (e.g. a smaller CNN:
    ``{"features_extractor_kwargs": {"features_dim": 32, "channels": [8]}}``). The student's
    lineage step names the first teacher as its parent and lists every teacher.
    """
    loaded = [teachers] if isinstance(teachers, Agent) else list(teachers)
    if not loaded:
        raise RllabError("give at least one teacher checkpoint")
    for t in loaded[1:]:
        if t.env_id != loaded[0].env_id or t.spec["action_space"] != loaded[0].spec["action_space"]:
            raise RllabError(f"all teachers must share one environment; got {loaded[0].env_id} and {t.env_id}")
    if critic and not all(t.has_critic for t in loaded):
        raise RllabError("--critic needs teachers with a trained state-value critic")
    teacher = loaded[0]
    th.manual_seed(seed)
    layers = parse_arch(arch)
    kwargs = student_kwargs(teacher, layers, critic, policy_kwargs)
    every = [provenance(t) for t in loaded]
    sources = [t["path"] for t in every]
    params = {
        "teachers": sources,
        "arch": layers,
        "temperature": temperature,
        "data": data,
        "steps": steps,
        "rounds": rounds,
        "epochs": epochs,
        "lr": lr,
        "batch_size": batch_size,
        "critic": critic,
        "seed": seed,
    }
    student = offspring(teacher, new_student(teacher, kwargs), policy_kwargs=kwargs)
    student.spec.pop("quantization", None)  # an int8 teacher labels the states; the new student is float
    student.spec["policy"]["class"] = "ActorCriticPolicy"
    student.spec["policy"]["has_critic"] = bool(critic)
    if not isinstance(teacher.policy, ActorCriticPolicy):
        # Rusu et al. (2016) distil DQN Q-values, softmax(Q / T) with small T, into a policy network
        student.spec["algo"] = f"distill-{teacher.algo}"
    stats = train_by_distillation(
        student, loaded, data, steps, temperature, rounds, epochs, lr, batch_size, critic, seed, progress
    )
    result = DistillResult(**stats)
    student.spec["training"] = {"complete": True, "distilled_from": sources}
    # every teacher of an ensemble, not only the first (the step's parent)
    record(student, teacher, "distill", params, result.to_json(), teachers=every)
    return student, result
