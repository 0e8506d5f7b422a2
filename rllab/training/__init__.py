"""Training: Stable-Baselines3 (and the lab's REINFORCE) runs that end in an rllab checkpoint.

The run folder ``runs/NAME`` *is* the checkpoint (``agent.json``, ``weights.safetensors``) plus
``tb/`` (TensorBoard), ``eval.json`` and ``resume/`` (optimizer state and step counter for ``--resume``).

- ``config``: ``TrainConfig`` (a run's options) and their resolution into ``RunSettings``;
- ``build``: ``ModelRecipe`` and ``build_model`` (environments and the SB3 model);
- ``callbacks``: periodic evaluation and checkpoints; ``resume``: saving and restoring a run;
- ``defenses``: the registry of training-time defenses; ``finish``: final statistics, evaluation, save;
- ``trainer``: ``train``, the run top to bottom.
"""

from rllab.algos import ALGOS
from rllab.training.build import ModelRecipe, build_model, make_vec_env, model_recipe, split_hyperparams
from rllab.training.config import RunSettings, TrainConfig, default_run_dir
from rllab.training.defenses import DEFENSE_PROVIDERS, TRAINING_DEFENSES, training_defense
from rllab.training.resume import RESUME_DIR, agent_from_model, save_run
from rllab.training.trainer import train, train_config

__all__ = [
    "ALGOS",
    "DEFENSE_PROVIDERS",
    "RESUME_DIR",
    "TRAINING_DEFENSES",
    "ModelRecipe",
    "RunSettings",
    "TrainConfig",
    "agent_from_model",
    "build_model",
    "default_run_dir",
    "make_vec_env",
    "model_recipe",
    "save_run",
    "split_hyperparams",
    "train",
    "train_config",
    "training_defense",
]
