"""Environments through gymnasium (imported lazily: ``pip install gymnasium``)."""

from __future__ import annotations

from typing import Any

__all__ = ["ENVIRONMENTS", "make_env", "resolve_env_id"]

#: short names accepted everywhere an environment id is
ENVIRONMENTS: dict[str, str] = {"cartpole": "CartPole-v1"}


def resolve_env_id(name: str) -> str:
    """``"cartpole"`` -> ``"CartPole-v1"``; full gymnasium ids pass through."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"environment must be a non-empty string, got {name!r}")
    return ENVIRONMENTS.get(name.lower(), name)


def make_env(name: str) -> Any:
    """A gymnasium environment with a flat, vector observation and discrete actions.

    Raises:
        ValueError: unknown id, or an environment whose spaces are not supported.
        ImportError: gymnasium is not installed.
    """
    try:
        import gymnasium as gym
    except ImportError as e:  # pragma: no cover - gymnasium is a dependency
        raise ImportError("advlab.rl needs gymnasium: pip install 'gymnasium>=0.29'") from e
    env_id = resolve_env_id(name)
    try:
        env = gym.make(env_id)
    except gym.error.Error as e:
        raise ValueError(f"unknown environment {name!r} ({e}); try one of {sorted(ENVIRONMENTS)}") from None
    if not isinstance(env.action_space, gym.spaces.Discrete):
        env.close()
        raise ValueError(f"{env_id} has a {type(env.action_space).__name__} action space; "
                         "advlab.rl supports discrete actions only")
    if not isinstance(env.observation_space, gym.spaces.Box) or len(env.observation_space.shape) != 1:
        env.close()
        raise ValueError(f"{env_id} observations must be flat vectors (a 1-D Box)")
    return env
