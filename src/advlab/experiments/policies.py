"""The DQN policy cache: the same versioned key and finished check as the model cache."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from advlab.experiments.cache import cache_key
from advlab.rl.dqn import POLICY_FILE, DQNConfig, TrainedPolicy, load_policy, save_policy, train_dqn
from advlab.rl.envs import resolve_env_id

__all__ = ["get_or_train_policy", "policy_path"]

log = logging.getLogger(__name__)


def policy_path(env: str, config: DQNConfig, cache_dir: str | Path) -> Path:
    """The cache entry of the DQN policy for ``(env, config)``."""
    env_id = resolve_env_id(env)
    key = cache_key({"env": env_id, "dqn": asdict(config)})
    return Path(cache_dir).expanduser() / f"{env_id.replace('/', '-')}-dqn-seed{config.seed}-{key}"


def get_or_train_policy(env: str, config: DQNConfig, cache_dir: str | Path,
                        on_eval: Callable[[int, float], None] | None = None) -> TrainedPolicy:
    """The policy for ``(env, config)`` from ``cache_dir``, trained and stored on first use.

    An entry is finished once its ``policy.json`` exists (written atomically after the
    weights); a corrupt entry is logged and retrained. DQN training is short and has no
    resume: an interrupted run starts again.

    Args:
        env: environment name or gymnasium id.
        config: DQN settings (part of the versioned cache key).
        cache_dir: folder of cached policies (e.g. ``~/.cache/advlab/rl``).
        on_eval: progress callback passed to :func:`~advlab.rl.dqn.train_dqn`.
    """
    env_id = resolve_env_id(env)
    directory = policy_path(env_id, config, cache_dir)
    if (directory / POLICY_FILE).is_file():
        try:
            return load_policy(directory)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            log.warning("ignoring corrupt cached policy %s (%s); retraining", directory, e)
    policy = train_dqn(env_id, config, on_eval=on_eval)
    save_policy(policy, directory)
    return policy
