"""SA-PPO's continuous-control attacks (Random, Critic, MAD, RS, RS+MAD) and the learned PA-AD adversary on a tiny
Gaussian agent, with the IBP bound on its mean action: what each costs and how far each brings the return.

The agent is PPO on ``Reach1D-v0`` (``tests/toy_control.py``: drive a point on a line to 0; 4096 steps, seed 0).
Every row uses the same 20 episodes (seeds 0..19). Run from the repository root:

    OMP_NUM_THREADS=1 .venv/bin/python bench/continuous_attacks.py

Writes ``bench/results/continuous_attacks.{md,json}``.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import rllab  # noqa: E402
from robustness.attacks.sarsa import SarsaSettings, robust_q  # noqa: E402
from robustness.certify import certify  # noqa: E402
from robustness.evaluate import continuous_suite, evaluate  # noqa: E402
from robustness.learned.attack import LearnedAttack  # noqa: E402
from robustness.learned.train import train_adversary  # noqa: E402
from tests.toy_control import register  # noqa: E402

EPS = [0.5, 1.0, 2.0]
EPISODES = 20
RS = SarsaSettings(steps=10_000, epochs=20)
ADV_STEPS = 4096


def main() -> None:
    """Train the agent, learn RS's Q, train one learned adversary per eps, attack, certify, write the results."""
    torch.set_num_threads(1)
    register()
    tmp = Path(tempfile.mkdtemp(prefix="continuous-attacks-"))
    t = time.perf_counter()
    agent = rllab.train(
        "ppo",
        "Reach1D-v0",
        seed=0,
        steps=4096,
        out=tmp / "victim",
        progress=False,
        overrides=["n_steps=256", "batch_size=64"],
        threads=1,
    )
    train_s = time.perf_counter() - t
    t = time.perf_counter()
    learned_q = robust_q(agent, RS, seed=0)
    rs_s = time.perf_counter() - t
    attacks = continuous_suite(agent, rs=RS)
    card = evaluate(agent, attacks=attacks, eps=EPS, episodes=EPISODES, n_envs=10, seed=0, progress=False)
    learned = {}
    adv_s = {}
    for e in EPS:
        t = time.perf_counter()
        adv = train_adversary(
            tmp / "victim", e, steps=ADV_STEPS, seed=0, out=tmp / f"adv{e:g}", progress=False, final_eval_episodes=2
        )
        adv_s[f"{e:g}"] = round(time.perf_counter() - t, 1)
        row = evaluate(
            agent, attacks=[LearnedAttack(adv)], eps=[e], episodes=EPISODES, n_envs=10, seed=0, progress=False
        )["results"]["learned"][f"{e:g}"]
        learned[f"{e:g}"] = row
    card["results"]["learned"] = learned
    cert = certify(agent, EPS, episodes=5, seed=0)
    out = {
        "date": dt.date.today().isoformat(),
        "command": "OMP_NUM_THREADS=1 .venv/bin/python bench/continuous_attacks.py",
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
        "agent": {"algo": "ppo", "env": "Reach1D-v0", "steps": 4096, "seed": 0, "train_s": round(train_s, 1)},
        "clean": {k: card["clean"][k] for k in ("mean_return", "ci95_return")},
        "rows": {
            label: {
                e: {k: r[k] for k in ("mean_return", "ci95_return", "action_change_rate", "wall_s")}
                for e, r in by_eps.items()
            }
            for label, by_eps in card["results"].items()
        },
        "robust_sarsa": {
            **RS.__dict__,
            "learn_s": round(rs_s, 1),
            "td_loss": [h["td_loss"] for h in learned_q.history],
        },
        "learned": {"adv_steps": ADV_STEPS, "train_s": adv_s},
        "certify": cert.to_dict(),
    }
    res = ROOT / "bench" / "results"
    (res / "continuous_attacks.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        "# SA-PPO's continuous-control attacks on a tiny Gaussian agent",
        "",
        f"{out['date']}, `{out['command']}`, Python {out['versions']['python']}, torch {out['versions']['torch']}, "
        "one CPU thread on a shared 2-core host.",
        "",
        f"PPO on `Reach1D-v0` (tests/toy_control.py), 4096 steps, seed 0 ({train_s:.1f} s). {EPISODES} episodes "
        "(seeds 0..19) per row; eps in obs std (linf). Return = minus the summed distance to 0 over 30 steps.",
        "",
        f"Clean: {out['clean']['mean_return']:.2f} (95% CI {out['clean']['ci95_return'][0]:.2f} .. "
        f"{out['clean']['ci95_return'][1]:.2f}).",
        "",
        "| attack | " + " | ".join(f"eps {e:g}" for e in EPS) + " | ratio to noise at eps 1 |",
        "|---|" + "---|" * (len(EPS) + 1),
    ]
    noise1 = out["rows"]["noise"]["1"]["mean_return"]
    for label, by_eps in out["rows"].items():
        cells = [
            f"{by_eps[f'{e:g}']['mean_return']:.2f} [{by_eps[f'{e:g}']['ci95_return'][0]:.2f}, "
            f"{by_eps[f'{e:g}']['ci95_return'][1]:.2f}]"
            for e in EPS
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {by_eps['1']['mean_return'] / noise1:.2f}x |")
    td = out["robust_sarsa"]["td_loss"]
    lines += [
        "",
        f"Robust Sarsa's Q: {RS.steps} rollout steps, {RS.epochs} epochs of minibatches of {RS.batch} "
        f"(rs-eps {RS.eps}, rs-reg {RS.reg}), learned once for all rows and eps in {rs_s:.1f} s; "
        f"TD loss {td[0]:.4f} (epoch 1), {max(td):.4f} (max), {td[-1]:.4f} (last).",
        f"Learned adversary: one PA-AD adversary per eps, {ADV_STEPS} PPO steps each "
        f"({', '.join(f'{v} s' for v in adv_s.values())}).",
        "",
        "IBP bound on the mean action's change (raw action units, action range [-1, 1]), over "
        f"{cert.states} visited states:",
        "",
        "| eps | mean bound | median | max |",
        "|---|---|---|---|",
    ]
    for r in cert.rows:
        lines.append(f"| {r['eps']:g} | {r['mean_bound']:.3f} | {r['median_bound']:.3f} | {r['max_bound']:.3f} |")
    (res / "continuous_attacks.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
