"""Batched PGD-10 on a NatureCNN-size agent (84x84x4 frames), batch 1024: the lab's attack vs torchattacks.

The agent is a PPO actor-critic with SB3's NatureCNN on uint8 (4, 84, 84) observations and
6 actions, random weights (speed does not depend on training). Variants, same batch and
device, eps = 4/255 linf, action objective, no random start so results are comparable:

- ``torchattacks``: torchattacks.PGD through the lab's threat-model adapter, fp32;
- ``rllab-fp32-autograd-conv``: ``robustness.attacks.PGD`` with the framework's own input
  gradient through the strided convolutions (``pgd.fast_conv = False``);
- ``rllab-fp32``: ``robustness.attacks.PGD`` as shipped (space-to-depth input gradients of
  NatureCNN's stride-4 and stride-2 layers, ``robustness/attacks/gradients.py``);
- ``rllab-bf16``: the same with bf16 autocast and channels-last convolutions;
- ``rllab-bf16-compiled`` (CUDA): and the convolutional trunk compiled with ``torch.compile``.

The agent's parameters are frozen (``requires_grad_(False)``) for the lab's variants: an attack
needs gradients with respect to the input only.

For each lab variant the fraction of observations whose perturbed action equals torchattacks'
is recorded (agreement beyond numerical noise). Writes bench/results/attack_gpu.{json,md}
(``attack_gpu_cpu.*`` when run with ``--device cpu``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from gymnasium import spaces

from rllab.agent import agent_from_spec, spec_skeleton
from robustness.attacks import PGD, TorchAttack
from robustness.threat import ThreatModel

RESULTS = Path(__file__).parent / "results"


def nature_agent(device: str):
    obs = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    spec = spec_skeleton(
        "ppo",
        "bench/NatureCNN",
        {},
        [],
        obs,
        spaces.Discrete(6),
        "ActorCriticPolicy",
        {"features_extractor": "nature_cnn"},
        has_critic=True,
    )
    spec["obs_stats"] = None
    torch.manual_seed(0)
    return agent_from_spec(spec, device).eval()


def cpu_name() -> str:
    model = (
        next(
            (
                ln.split(":", 1)[1].strip()
                for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if "model name" in ln
            ),
            "unknown model",
        )
        if Path("/proc/cpuinfo").exists()
        else "unknown model"
    )
    return f"cpu ({model}, {torch.get_num_threads()} threads)"


def timed(fn, repeats: int, device: str) -> tuple[float, torch.Tensor]:
    out = fn()  # warm-up (cuDNN autotune, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(repeats):
        out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / repeats, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.backends.cudnn.benchmark = True
    agent = nature_agent(args.device)
    gen = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch, 4, 84, 84), generator=gen).float().to(args.device)
    threat = ThreatModel.for_agent(agent, 4 / 255)
    ta = TorchAttack("PGD", steps=10, random_start=False)
    t_ta, adv_ta = timed(lambda: ta(agent, x, threat), args.repeats, args.device)
    rows = {"torchattacks": {"s_per_batch": t_ta, "obs_per_s": args.batch / t_ta}}
    a_ta = agent.act(adv_ta)
    # (name, bf16 autocast, channels-last, compiled trunk, space-to-depth conv input gradients)
    variants = [
        ("rllab-fp32-autograd-conv", False, False, False, False),
        ("rllab-fp32", False, False, False, True),
        ("rllab-bf16", True, True, False, True),
    ]
    if args.device == "cuda":
        variants.append(("rllab-bf16-compiled", True, True, True, True))
    agent.policy.requires_grad_(False)  # the attack needs input gradients only
    for name, amp, channels_last, compiled, s2d in variants:
        if channels_last:
            agent.policy.to(memory_format=torch.channels_last)
        if compiled:
            # compile the convolutional trunk; the rest of the attack stays eager
            agent.policy.features_extractor = torch.compile(agent.policy.features_extractor)
            agent.policy.pi_features_extractor = agent.policy.features_extractor
        xin = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        pgd = PGD("action", steps=10, random_start=False, amp=amp)
        pgd.fast_conv = s2d
        t, adv = timed(lambda pgd=pgd, xin=xin: pgd(agent, xin, threat), args.repeats, args.device)
        threat.check(adv, x, name)
        rows[name] = {
            "s_per_batch": t,
            "obs_per_s": args.batch / t,
            "speedup_vs_torchattacks": t_ta / t,
            "same_action_as_torchattacks": float((agent.act(adv) == a_ta).mean()),
        }
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else cpu_name()
    out = {
        "benchmark": "attack_gpu",
        "device": device_name,
        "torch": torch.__version__,
        "batch": args.batch,
        "obs": "uint8 (4, 84, 84)",
        "net": "NatureCNN actor-critic, 6 actions",
        "attack": "PGD-10 linf 4/255 action",
        "results": rows,
    }
    RESULTS.mkdir(exist_ok=True)
    stem = "attack_gpu" if args.device == "cuda" else f"attack_gpu_{args.device}"  # a CPU run keeps the GPU figures
    (RESULTS / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# PGD-10 on a NatureCNN agent, batch {args.batch}, {device_name}",
        "",
        "| variant | ms / batch | observations / s | vs torchattacks | same action as torchattacks |",
        "|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {1000 * r['s_per_batch']:.1f} | {r['obs_per_s']:.0f} | "
            f"{r.get('speedup_vs_torchattacks', 1.0):.2f}x | "
            f"{r.get('same_action_as_torchattacks', 1.0):.3f} |"
        )
    (RESULTS / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
