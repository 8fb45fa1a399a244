"""Environments through gymnasium (imported lazily: ``pip install gymnasium``).

``"cartpole"`` is gymnasium's CartPole-v1. ``"seaquest"`` is MinAtar's Seaquest
(Young & Tian 2019; optional, ``pip install --no-deps minatar``: the game needs
only numpy, its other requirements serve its GUI), a 10 x 10 miniature of the
Atari game with 10 binary object channels; it is flattened to a vector of
1000 values in ``{0, 1}`` and capped at :data:`MINATAR_MAX_STEPS` steps.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ENVIRONMENTS", "MINATAR_MAX_STEPS", "make_env", "resolve_env_id", "minatar_available"]

#: short names accepted everywhere an environment id is
ENVIRONMENTS: dict[str, str] = {"cartpole": "CartPole-v1", "seaquest": "MinAtar/Seaquest-v1"}

#: episode cap of the MinAtar games (MinAtar itself has none; a policy that keeps
#: surfacing for oxygen could otherwise play forever)
MINATAR_MAX_STEPS = 2_000


def resolve_env_id(name: str) -> str:
    """``"cartpole"`` -> ``"CartPole-v1"``; full gymnasium ids pass through."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"environment must be a non-empty string, got {name!r}")
    return ENVIRONMENTS.get(name.lower(), name)


def _import_minatar_gym() -> Any:
    """``minatar.gym``, silencing the warning minatar logs when seaborn (GUI only) is absent."""
    import logging

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        import minatar.gym as mgym
    finally:
        root.setLevel(level)
    return mgym


def minatar_available() -> bool:
    """Whether the optional ``minatar`` package can be imported."""
    try:
        _import_minatar_gym()
    except ImportError:
        return False
    return True


def _make_minatar(gym: Any, env_id: str) -> Any:
    try:
        mgym = _import_minatar_gym()
    except ImportError as e:
        raise ImportError(f"{env_id} needs the optional package minatar: "
                          "pip install --no-deps minatar (only numpy is needed to play)") from e
    if env_id not in gym.registry:
        mgym.register_envs()
    env = gym.make(env_id, max_episode_steps=MINATAR_MAX_STEPS)
    env = gym.wrappers.FlattenObservation(env)
    return gym.wrappers.DtypeObservation(env, "float32")


def make_env(name: str) -> Any:
    """A gymnasium environment with a flat, vector observation and discrete actions.

    Raises:
        ValueError: unknown id, or an environment whose spaces are not supported.
        ImportError: gymnasium (or, for MinAtar games, minatar) is not installed.
    """
    try:
        import gymnasium as gym
    except ImportError as e:  # pragma: no cover - gymnasium is a dependency
        raise ImportError("advlab.rl needs gymnasium: pip install 'gymnasium>=0.29'") from e
    env_id = resolve_env_id(name)
    try:
        env = _make_minatar(gym, env_id) if env_id.startswith("MinAtar/") else gym.make(env_id)
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
