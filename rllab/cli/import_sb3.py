"""``rllab import-sb3``: a Stable-Baselines3 zip as a checkpoint, without unpickling anything in it."""

from __future__ import annotations

import argparse

from rllab.parsing import seed_int
from rllab.sb3_import import import_sb3


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``import-sb3``."""
    p = sub.add_parser("import-sb3", help="import a Stable-Baselines3 .zip without unpickling it")
    p.add_argument("model", help="PPO, A2C or DQN .zip saved by Stable-Baselines3")
    p.add_argument("--env", required=True, help="the Gymnasium id the model was trained on")
    p.add_argument("--out", required=True, help="checkpoint folder to write")
    p.add_argument("--algo", choices=["ppo", "a2c", "dqn"], help="override the detected algorithm")
    p.add_argument("--seed", type=seed_int, default=0, help="seed of the rollouts that gather observation statistics")
    p.set_defaults(func=cmd_import)


def cmd_import(args: argparse.Namespace) -> int:
    """Import a Stable-Baselines3 zip as a checkpoint (nothing in it is unpickled)."""
    agent = import_sb3(args.model, args.env, args.out, algo=args.algo, seed=args.seed)
    print(f"imported {agent.algo} for {agent.env_id} from {args.model} -> {args.out} (nothing was unpickled)")
    return 0
