"""Why ``--threads`` defaults to 1 for MLP agents and min(cores, 4) for NatureCNN agents: the time of the
work an attack does (forward + backward of the policy on a batch) at 1 and at 2 PyTorch threads, for a
64x64 MLP on 16 vectors and a NatureCNN on 16 frames of 4x84x84, on this host as it is (busy or not).

    .venv/bin/python bench/threads_default.py   # writes bench/results/threads_default.{md,json}
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch as th
from stable_baselines3.common.torch_layers import NatureCNN
from torch import nn

OUT = Path(__file__).parent / "results"


def median_seconds(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` over ``repeats`` calls (after two warm-up calls)."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def workloads() -> dict[str, tuple]:
    """name -> (module, input batch, repeats)."""
    th.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(11, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 3))
    space = gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    cnn = nn.Sequential(NatureCNN(space, 512), nn.Linear(512, 6))
    return {
        "mlp 64x64, batch 16": (mlp, th.randn(16, 11), 2000),
        "NatureCNN 4x84x84, batch 16": (cnn, th.rand(16, 4, 84, 84), 20),
    }


def main() -> None:
    """Measure, print and write the table."""
    rows = []
    for name, (net, x, repeats) in workloads().items():

        def step(net=net, x=x) -> None:
            xi = x.clone().requires_grad_(True)
            net(xi).sum().backward()

        per = {}
        for n in (1, 2):
            th.set_num_threads(n)
            per[n] = median_seconds(step, repeats)
        rows.append({"workload": name, "s_1_thread": per[1], "s_2_threads": per[2], "speedup_2_vs_1": per[1] / per[2]})
    th.set_num_threads(1)
    record = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "load_avg_1min": os.getloadavg()[0], "python": platform.python_version()},
        "torch": th.__version__,
        "rows": rows,
        "command": "nice -n 10 .venv/bin/python bench/threads_default.py",
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "threads_default.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# PyTorch threads: 1 vs 2 on the lab's workloads",
        "",
        f"{record['date']}, {record['host']['cpus']} CPUs, load average {record['host']['load_avg_1min']:.2f}, "
        f"torch {record['torch']}. Forward + backward, median time per call.",
        "",
        "| workload | 1 thread (ms) | 2 threads (ms) | speed-up 2 vs 1 |",
        "| --- | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['workload']} | {r['s_1_thread'] * 1e3:.3f} | {r['s_2_threads'] * 1e3:.3f} | "
            f"{r['speedup_2_vs_1']:.2f}x |"
        )
    lines += ["", f"Reproduce: `{record['command']}`", ""]
    (OUT / "threads_default.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
