"""Adversarial attacks on reinforcement-learning policies (Huang et al. 2017).

A small seeded DQN (:func:`train_dqn`; cached by
:func:`advlab.experiments.get_or_train_policy`), batched
seeded rollouts (:func:`rollout`), the per-step observation adversary
(:class:`ObservationAttack`: FGSM or same-norm noise, optionally computed on a
second policy for transfer) and the return-vs-eps experiment
(:func:`return_vs_eps`).

References:
    Huang, Papernot, Goodfellow, Duan & Abbeel, "Adversarial Attacks on Neural
    Network Policies", arXiv:1702.02284, 2017.
"""

from advlab.rl.attack import (
    ObservationAttack,
    ReturnCurve,
    ScaledPolicy,
    random_perturbation,
    return_vs_eps,
)
from advlab.rl.dqn import (
    DQNConfig,
    QNetwork,
    TrainedPolicy,
    default_config,
    load_policy,
    observation_scale,
    save_policy,
    train_dqn,
)
from advlab.rl.envs import ENVIRONMENTS, make_env, minatar_available, resolve_env_id
from advlab.rl.episodes import EpisodeStats, rollout

__all__ = [
    "ObservationAttack", "ReturnCurve", "ScaledPolicy", "random_perturbation", "return_vs_eps",
    "DQNConfig", "QNetwork", "TrainedPolicy", "default_config", "load_policy",
    "observation_scale", "save_policy", "train_dqn", "ENVIRONMENTS", "make_env", "minatar_available",
    "resolve_env_id", "EpisodeStats", "rollout",
]
