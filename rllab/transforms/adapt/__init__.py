"""Adaptation of an agent to a shifted domain, without the target's rewards.

The source domain is the environment the agent was trained in; the target is the same task seen
differently (an observation shift, another rendering, distractors), with the same observation and
action spaces. Both domains are visited in lockstep, from the same reset seeds with the same actions,
so each source state has a target *twin* (``data.paired_states``). The adapted network is trained on

* a task loss on *source* states: the frozen source agent's action distribution (KL, as in
  distillation; Q-values and the critic by relative squared error), so behaviour where the agent was
  trained is kept;
* with ``method="consistency"`` (the default), the same loss on each target twin against the source
  agent's outputs on its source state: what the action depends on is taught in the target itself;
* with ``method="dann"``, a domain loss on the representation instead: a domain classifier learns to
  tell source from target features, and the network learns to make them indistinguishable, through a
  gradient-reversal layer (``grl``, Ganin et al. 2016) or by pushing the classifier's output to 1/2
  (``confusion``, Tzeng et al. 2015). ``method="entropy"`` adds entropy minimisation on target
  predictions (Grandvalet & Bengio 2004). The domain loss can be added to consistency with ``coef``.

Why alignment alone failed (issue 18): matching the *marginal* distribution of first-layer features
says nothing about which target feature matches which source feature. With distractors the classifier
was fooled (held-out accuracy 0.50) while the adapted agent took the source agent's action on only part
of the paired target states: features were matched class-blind, and the task loss, which never sees a
target state, cannot notice. The twins give that correspondence directly.

The weight of the domain loss follows Ganin et al.'s ramp, the learning rate decays linearly to zero and
the saved weights are an exponential moving average of the training weights. The summary reports returns
in both domains before and after, the share of the source-target gap closed, the domain gap (held-out
accuracy of a fresh classifier on the frozen features, and the proxy A-distance), the paired action
agreement, and warnings: "not adapted" when less than a quarter of the gap closed, whether or not the
classifier was fooled.
"""

from rllab.transforms.adapt.core import METHODS, AdaptResult, adapt, adaptation_warnings, gap_closed, summary_line
from rllab.transforms.adapt.data import paired_states, target_spec
from rllab.transforms.adapt.features import domain_gap, ganin_schedule, reverse_gradient

__all__ = [
    "METHODS",
    "AdaptResult",
    "adapt",
    "adaptation_warnings",
    "domain_gap",
    "gap_closed",
    "ganin_schedule",
    "paired_states",
    "reverse_gradient",
    "summary_line",
    "target_spec",
]
