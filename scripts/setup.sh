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
# the lab and every extra: dev tools (with playwright), ray, optuna (rllab tune), and the third-party environments (atari, minatar, mujoco);
# about 1-2 minutes the first time on a 2-core host, seconds when everything is there already
.venv/bin/python -m pip install -q -c scripts/constraints.txt -e ".[dev,ray,atari,minatar,mujoco,tune]"
# torchattacks 3.5.1 declares requests~=2.25.1 and torchvision, neither of which it
# imports; torchvision does not even import beside the CPU torch. So: no deps.
.venv/bin/python -m pip install -q --no-deps "torchattacks==3.5.1"
.venv/bin/python -c "import torch, stable_baselines3, gymnasium, torchattacks, captum, ale_py, minatar, mujoco, cv2, optuna, playwright; print('rllab environment ready: torch', torch.__version__)"
# Debian's Chromium for the browser tests (tests/test_browser.py), where this host can install it: as root with
# apt. Elsewhere those tests skip (unless RLLAB_REQUIRE_BROWSER=1, as in CI) and the rest of the lab is unaffected.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: could not install chromium; the browser tests will skip"
  else
    echo "setup: chromium not found (install Debian's chromium to run the browser tests)"
  fi
fi
