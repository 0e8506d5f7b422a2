#!/usr/bin/env bash
# Creates .venv and installs rllab with everything it needs (idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
# CPU build of torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0"
# the lab and every extra: dev tools, ray, and the third-party environments (atari, minatar, mujoco);
# about 1-2 minutes the first time on a 2-core host, seconds when everything is there already
.venv/bin/python -m pip install -q -e ".[dev,ray,atari,minatar,mujoco]"
# torchattacks 3.5.1 declares requests~=2.25.1 and torchvision, neither of which it
# imports; torchvision does not even import beside the CPU torch. So: no deps.
.venv/bin/python -m pip install -q --no-deps "torchattacks==3.5.1"
.venv/bin/python -c "import torch, stable_baselines3, gymnasium, torchattacks, captum, ale_py, minatar, mujoco, cv2; print('rllab environment ready: torch', torch.__version__)"
