"""Batched attacked evaluation vs a per-environment torchattacks loop, same agent, same steps.

- ``rllab``: PGD-10 (action objective) through ``robustness.evaluate.attacked_run`` over 16
  environments stepped together: one attack call per vector step.
- ``loop``: the way it is usually written by hand: one environment, and for each step a
  ``torchattacks.PGD`` call on that single observation (through the same threat-model adapter).

Both run the same number of environment steps on the same agent (PPO CartPole-v1, shipped
defaults, seed 0, or any checkpoint given with ``--run``), one torch thread, 5 interleaved repeats
(medians). Writes bench/results/attack_speed.{json,md}, or attack_speed_<name>.{json,md} with ``--name``.

The NatureCNN row of issue 16 (an ALE Pong-v5 agent, see bench/atari_pong_cli.py):
``nice -n 10 .venv/bin/python bench/attack_speed.py --run runs/bench-pong --eps 2/255 --episodes 8 --n-envs 8
--repeats 1 --name naturecnn``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

import rllab
from rllab.parsing import parse_number
from robustness.attacks import PGD, TorchAttack
from robustness.evaluate import attacked_run
from robustness.threat import ThreatModel

RESULTS = Path(__file__).parent / "results"
MLP_NOTE = (
    "Both sides call the same agent, so both gain from its plain-MLP forward path; the batched "
    "PGD also takes the objective's input gradient by hand for plain MLP actors "
    "(`robustness/attacks/gradients.py: MLPInputGradient`, checked against autograd in the tests), "
    "which torchattacks cannot (it runs autograd itself). Without that, the ratio was 14-15x.\n"
)
CNN_NOTE = (
    "A CNN agent has no hand-written gradient: both sides run autograd through the same network, so the ratio is "
    "what batching the environments into one attack call buys (a NatureCNN forward+backward on 8 stacks costs far "
    "less than 8 on one). Each repeat takes minutes on this host, which other jobs shared (load average about 5).\n"
)


def agent_path(workdir: Path) -> Path:
    run = workdir / "ppo-CartPole-v1-s0"
    if not (run / "agent.json").exists():
        rllab.train("ppo", "CartPole-v1", seed=0, out=run, progress=False)
    return run


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--eps", default="0.1", help="in the agent's threat unit (k/255 for pixel agents)")
    parser.add_argument("--workdir", default="runs/bench-attack")
    parser.add_argument("--run", help="checkpoint to attack (default: PPO CartPole-v1 seed 0, trained if missing)")
    parser.add_argument("--n-envs", type=int, default=16)
    parser.add_argument("--name", help="results go to attack_speed_NAME.{json,md}")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    agent = rllab.load(args.run or agent_path(Path(args.workdir)))
    args.eps = parse_number(args.eps, "--eps")
    threat = ThreatModel.for_agent(agent, args.eps)
    extractor = getattr(agent.policy, "features_extractor", None) or agent.policy.q_net.features_extractor
    described = f"{agent.algo} {agent.env_id}, {type(extractor).__name__}"

    def batched_run() -> tuple[float, int]:
        t = time.perf_counter()
        row = attacked_run(agent, PGD("action", steps=10), threat, args.episodes, seed=0, n_envs=args.n_envs)
        return time.perf_counter() - t, row["steps"]

    def loop_run(steps: int) -> float:
        # the hand-written baseline: one env, torchattacks PGD per step, until the same number of steps
        env = agent.make_env()
        attack = TorchAttack("PGD", steps=10)
        done_steps, episode = 0, 0
        t = time.perf_counter()
        obs, _ = env.reset(seed=0)
        while done_steps < steps:
            x = torch.as_tensor(obs[None], dtype=torch.float32)
            action = agent.act(attack(agent, x, threat))[0]
            obs, _, term, trunc, _ = env.step(action)
            done_steps += 1
            if term or trunc:
                episode += 1
                obs, _ = env.reset(seed=episode)
        return time.perf_counter() - t

    # interleaved repeats, medians: one batched run lasts half a second, so single runs are noisy
    batched_walls, loop_walls = [], []
    for _ in range(args.repeats):
        wall, steps = batched_run()
        batched_walls.append(wall)
        loop_walls.append(loop_run(steps))
    batched_s, loop_s = float(np.median(batched_walls)), float(np.median(loop_walls))
    ratios = sorted(lw / bw for lw, bw in zip(loop_walls, batched_walls, strict=True))

    out = {
        "benchmark": "attack_speed",
        "agent": described if args.run else "ppo CartPole-v1 seed 0",
        "attack": "PGD-10, action objective",
        "eps": args.eps,
        "unit": threat.unit,
        "n_envs": args.n_envs,
        "steps": steps,
        "torch_threads": 1,
        "machine": platform.platform(),
        "rllab_batched": {"wall_s": round(batched_s, 3), "steps_per_s": round(steps / batched_s, 1)},
        "torchattacks_loop_1_env": {"wall_s": round(loop_s, 3), "steps_per_s": round(steps / loop_s, 1)},
        "speedup": round(loop_s / batched_s, 2),
        "repeats": args.repeats,
        "speedup_per_repeat": [round(r, 2) for r in ratios],
        "batched_walls_s": [round(w, 3) for w in batched_walls],
        "loop_walls_s": [round(w, 3) for w in loop_walls],
    }
    RESULTS.mkdir(exist_ok=True)
    stem = f"attack_speed_{args.name}" if args.name else "attack_speed"
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")
    md = (
        f"# Attacked evaluation speed (PGD-10, {steps} environment steps, CPU, 1 thread)\n\n"
        f"Agent: {out['agent']}; eps {args.eps:g} ({out['unit']}); "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, torch {torch.__version__}.\n\n"
        "| variant | wall (s) | env steps/s |\n|---|---|---|\n"
        f"| rllab, batched over {args.n_envs} envs | {batched_s:.2f} | {steps / batched_s:.0f} |\n"
        f"| torchattacks.PGD per step, 1 env | {loop_s:.2f} | {steps / loop_s:.0f} |\n\n"
        f"Speed-up: **{loop_s / batched_s:.1f}x** (goal >= {3 if args.run else 20}x): ratio of the median walls over "
        f"{args.repeats} interleaved repeats; per repeat {min(ratios):.1f}x to {max(ratios):.1f}x.\n\n"
        + (MLP_NOTE if not args.run else CNN_NOTE)
    )
    (RESULTS / f"{stem}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
