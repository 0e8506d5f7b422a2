"""``rllab tune``: hyperparameter tuning with Optuna (RL Zoo's tuner) over a search space, with pruning of bad
trials, on the sweep's backends (local process pool, Ray), and a robustness-aware objective
``clean - w * (clean - worst case at eps)``. It trains (rllab) and attacks (robustness), so it lives in the
study package (L5).

- ``space``: search space files, the shipped spaces, a trial's hyperparameter file;
- ``trial``: one rung of one trial, in a worker; the objective;
- ``run``: the driver (ask-and-tell, rungs, pruning, resume); ``report``: trials.md and best.yml;
- ``commands``: the ``rllab tune`` command line.
"""
