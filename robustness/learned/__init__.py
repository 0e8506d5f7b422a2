"""The optimal learned adversary (ATLA, PA-AD): its environment, its training, the attack it makes, ATLA training.

- ``robustness.learned.env``: ``rllab/Attacked-v0``, the victim's environment seen from the adversary's side;
- ``robustness.learned.train``: ``train_adversary``, a PPO adversary checkpoint against a victim checkpoint;
- ``robustness.learned.attack``: ``LearnedAttack``, the adversary as an attack of the suite;
- ``robustness.learned.atla``: ``install_atla``, adversarial training against an adversary that learns alongside.
"""
