"""A small deep Q-network (Mnih et al. 2015), seeded end to end, and its on-disk format.

The cache of trained policies is :func:`advlab.experiments.get_or_train_policy`.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from advlab._version import __version__
from advlab.rl.envs import make_env, resolve_env_id
from advlab.rl.episodes import rollout, single_thread

__all__ = ["QNetwork", "DQNConfig", "TrainedPolicy", "train_dqn", "save_policy", "load_policy",
           "observation_scale", "default_config", "POLICY_FILE"]

log = logging.getLogger(__name__)

#: the file of a saved policy written last: its presence marks a complete entry
POLICY_FILE = "policy.json"


class QNetwork(nn.Module):
    """MLP from observations ``(N, d)`` to one Q-value per action ``(N, A)``.

    Args:
        obs_dim: observation size.
        n_actions: number of discrete actions.
        hidden: hidden layer widths.
        generator: initial weights are drawn from it (the global RNG is not used).
    """

    def __init__(self, obs_dim: int, n_actions: int, hidden: tuple[int, ...] = (64, 64),
                 generator: torch.Generator | None = None) -> None:
        super().__init__()
        if obs_dim < 1 or n_actions < 2:
            raise ValueError(f"need obs_dim >= 1 and n_actions >= 2, got {obs_dim}, {n_actions}")
        dims = [obs_dim, *hidden, n_actions]
        layers: list[nn.Module] = []
        for i in range(len(dims) - 1):
            lin = torch.nn.utils.skip_init(nn.Linear, dims[i], dims[i + 1])  # no global-RNG draw
            with torch.no_grad():  # PyTorch's default init, drawn from ``generator``
                bound = 1 / math.sqrt(dims[i])
                lin.weight.uniform_(-bound, bound, generator=generator)
                lin.bias.uniform_(-bound, bound, generator=generator)
            layers += [lin, nn.ReLU()]
        self.net = nn.Sequential(*layers[:-1])
        self.config = {"obs_dim": obs_dim, "n_actions": n_actions, "hidden": list(hidden)}

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


@dataclass
class DQNConfig:
    """DQN settings (defaults solve CartPole-v1 in about 30 s on 2 CPU cores).

    Every ``eval_every`` steps the greedy policy plays ``eval_episodes`` seeded
    episodes and the best-scoring weights are kept (DQN is known to oscillate
    on CartPole; the kept policy is the best one seen). Training stops early
    once that mean return reaches ``stop_return`` (default: the environment's
    ``reward_threshold``, 475 for CartPole-v1; ``float('inf')`` never stops).
    """

    total_steps: int = 30_000
    hidden: tuple[int, ...] = (64, 64)
    lr: float = 1e-3
    gamma: float = 0.99
    batch_size: int = 64
    buffer_size: int = 50_000
    learning_starts: int = 1_000
    train_every: int = 1
    target_update: int = 500
    eps_start: float = 1.0
    eps_end: float = 0.02
    eps_fraction: float = 0.1
    eval_every: int = 1_000
    eval_episodes: int = 5
    stop_return: float | None = None
    seed: int = 0

    def validate(self) -> None:
        for k in ("total_steps", "batch_size", "buffer_size", "train_every", "target_update",
                  "eval_every", "eval_episodes"):
            v = getattr(self, k)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{k} must be an integer >= 1, got {v!r}")
        if self.learning_starts < 0:
            raise ValueError(f"learning_starts must be >= 0, got {self.learning_starts}")
        if not 0 < self.lr < 1:
            raise ValueError(f"lr must lie in (0, 1), got {self.lr}")
        if not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must lie in [0, 1], got {self.gamma}")
        for k in ("eps_start", "eps_end", "eps_fraction"):
            if not 0 <= getattr(self, k) <= 1:
                raise ValueError(f"{k} must lie in [0, 1], got {getattr(self, k)}")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden must be a non-empty tuple of positive widths, got {self.hidden}")


@dataclass
class TrainedPolicy:
    """A trained Q-network and what is known about it.

    Attributes:
        q: the Q-network (eval mode).
        env: gymnasium id.
        config: training settings.
        eval_return: mean greedy return of the kept weights at their evaluation.
        obs_scale: the unit of the attack's eps per feature: the observation
            range ``high - low`` when the environment bounds every feature
            (MinAtar: 1), else the standard deviation of the observations seen
            by the greedy policy (CartPole).
        history: ``(step, mean greedy return)`` evaluations during training.
        seconds: training time (``0`` when loaded from the cache).
    """

    q: QNetwork
    env: str
    config: DQNConfig
    eval_return: float
    obs_scale: torch.Tensor
    history: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"env": self.env, "config": asdict(self.config), "eval_return": self.eval_return,
                "obs_scale": self.obs_scale.tolist(), "history": self.history,
                "seconds": self.seconds}


def default_config(env: str, seed: int = 0) -> DQNConfig:
    """The DQN settings used for ``env`` by the CLI, the lecture and the bench.

    CartPole-v1: :class:`DQNConfig` defaults. MinAtar Seaquest: 100,000 steps
    (one update of 32 transitions every 4 steps, as in Mnih et al.) of an MLP
    with one hidden layer of 256 on the flattened 10 x 10 x 10 frame,
    exploration decayed over the first half, no early stop. This is a tiny fraction of the 5 million frames of
    Young & Tian's MinAtar DQN; the policy is weak but clearly better than
    random play.
    """
    env_id = resolve_env_id(env)
    if env_id.startswith("MinAtar/"):
        return DQNConfig(total_steps=100_000, hidden=(256,), lr=2.5e-4, batch_size=32,
                         buffer_size=100_000, learning_starts=5_000, train_every=4, target_update=1_000,
                         eps_end=0.05, eps_fraction=0.5, eval_every=10_000, eval_episodes=10,
                         stop_return=math.inf, seed=seed)
    return DQNConfig(seed=seed)


def bounded_scale(space: Any) -> torch.Tensor | None:
    """``high - low`` of a Box observation space whose every bound is finite and
    moderate (pixel-like observations: eps is then a fraction of the range), else None."""
    low, high = np.asarray(space.low, np.float64), np.asarray(space.high, np.float64)
    bounds = np.r_[low.ravel(), high.ravel()]
    if not np.isfinite(bounds).all() or float(np.abs(bounds).max()) > 1e6:
        return None
    return torch.as_tensor(high - low, dtype=torch.float32).clamp_min(1e-3)


def observation_scale(policy: nn.Module, env: str, seeds: list[int]) -> torch.Tensor:
    """Per-feature standard deviation of the observations the greedy policy visits."""
    stats = rollout(policy, env, seeds[:1], record=True)
    obs = [stats.trace["obs"]]
    for s in seeds[1:]:
        obs.append(rollout(policy, env, [s], record=True).trace["obs"])
    x = torch.tensor([o for ep in obs for o in ep], dtype=torch.float32)
    return x.std(dim=0).clamp_min(1e-3)


def train_dqn(env: str = "CartPole-v1", config: DQNConfig | None = None,
              on_eval: Callable[[int, float], None] | None = None) -> TrainedPolicy:
    """Train a DQN with experience replay, a target network and Huber loss.

    Everything random (weights, exploration, replay sampling, environment
    resets) derives from ``config.seed``; the global RNGs are not touched.

    Args:
        env: environment name or gymnasium id.
        config: settings (default :class:`DQNConfig`).
        on_eval: called with ``(step, mean greedy return)`` at each evaluation.

    Returns:
        the :class:`TrainedPolicy` with the best evaluated weights.

    References:
        Mnih et al., "Human-level control through deep reinforcement
        learning", Nature 518, 2015.
    """
    cfg = config or DQNConfig()
    cfg.validate()
    with single_thread():
        return _train_dqn(resolve_env_id(env), cfg, on_eval)


def _train_dqn(env_id: str, cfg: DQNConfig,
               on_eval: Callable[[int, float], None] | None) -> TrainedPolicy:
    g = torch.Generator().manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    e = make_env(env_id)
    stop = cfg.stop_return
    if stop is None:
        spec = getattr(e, "spec", None)
        stop = spec.reward_threshold if spec is not None and spec.reward_threshold is not None else math.inf
    obs_dim, n_act = int(e.observation_space.shape[0]), int(e.action_space.n)
    range_scale = bounded_scale(e.observation_space)
    q = QNetwork(obs_dim, n_act, tuple(cfg.hidden), generator=g)
    target = copy.deepcopy(q)
    opt = torch.optim.Adam(q.parameters(), lr=cfg.lr)
    size = min(cfg.buffer_size, cfg.total_steps)
    buf_o = np.zeros((size, obs_dim), np.float32)
    buf_n = np.zeros((size, obs_dim), np.float32)
    buf_a = np.zeros(size, np.int64)
    buf_r = np.zeros(size, np.float32)
    buf_d = np.zeros(size, np.float32)
    t0 = time.perf_counter()
    episode = 0
    obs, _ = e.reset(seed=cfg.seed * 100_003 + episode)
    best_ret, best_state = -math.inf, {k: v.clone() for k, v in q.state_dict().items()}
    history: list[tuple[int, float]] = []
    eval_seeds = [10_000 + cfg.seed * 1_000 + i for i in range(cfg.eval_episodes)]
    decay = max(1, int(cfg.eps_fraction * cfg.total_steps))
    for step in range(1, cfg.total_steps + 1):
        eps = cfg.eps_start + (cfg.eps_end - cfg.eps_start) * min(1.0, step / decay)
        if rng.random() < eps:
            a = int(rng.integers(n_act))
        else:
            with torch.no_grad():
                a = int(q(torch.as_tensor(obs)[None]).argmax(1))
        nxt, r, term, trunc, _ = e.step(a)
        i = (step - 1) % size
        buf_o[i], buf_n[i], buf_a[i], buf_r[i], buf_d[i] = obs, nxt, a, r, float(term)
        obs = nxt
        if term or trunc:
            episode += 1
            obs, _ = e.reset(seed=cfg.seed * 100_003 + episode)
        if step >= cfg.learning_starts and step % cfg.train_every == 0:
            filled = min(step, size)
            j = torch.randint(0, filled, (cfg.batch_size,), generator=g).numpy()
            o, n_, a_ = torch.from_numpy(buf_o[j]), torch.from_numpy(buf_n[j]), torch.from_numpy(buf_a[j])
            r_, d_ = torch.from_numpy(buf_r[j]), torch.from_numpy(buf_d[j])
            with torch.no_grad():
                y = r_ + cfg.gamma * (1 - d_) * target(n_).amax(1)
            pred = q(o).gather(1, a_[:, None]).squeeze(1)
            loss = F.smooth_l1_loss(pred, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(q.parameters(), 10.0)
            opt.step()
        if step % cfg.target_update == 0:
            target.load_state_dict(q.state_dict())
        if step % cfg.eval_every == 0 or step == cfg.total_steps:
            q.eval()
            ret = rollout(q, env_id, eval_seeds).mean_return
            q.train()
            history.append((step, ret))
            log.info("DQN step %d: greedy return %.1f", step, ret)
            if on_eval is not None:
                on_eval(step, ret)
            if ret > best_ret:
                best_ret, best_state = ret, {k: v.clone() for k, v in q.state_dict().items()}
            if ret >= stop:
                break
    e.close()
    q.load_state_dict(best_state)
    q.eval()
    scale = range_scale if range_scale is not None else observation_scale(q, env_id, eval_seeds[:3])
    return TrainedPolicy(q=q, env=env_id, config=cfg, eval_return=best_ret, obs_scale=scale,
                         history=history, seconds=time.perf_counter() - t0)


def save_policy(policy: TrainedPolicy, directory: Path) -> None:
    """Write ``q.safetensors`` and ``policy.json`` atomically into ``directory``."""
    from safetensors.torch import save

    from advlab.io import atomic_write_bytes, atomic_write_json

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(directory / "q.safetensors",
                       save({k: v.contiguous() for k, v in policy.q.state_dict().items()}))
    meta = {**policy.to_dict(), "network": policy.q.config, "version": __version__}
    atomic_write_json(directory / POLICY_FILE, meta)


def load_policy(directory: Path) -> TrainedPolicy:
    """Read a policy written by :func:`save_policy`."""
    from safetensors.torch import load

    directory = Path(directory)
    try:
        meta = json.loads((directory / POLICY_FILE).read_text())
        state = load((directory / "q.safetensors").read_bytes())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"no readable policy in {directory}: {e}") from None
    net = meta["network"]
    q = QNetwork(net["obs_dim"], net["n_actions"], tuple(net["hidden"]), generator=torch.Generator())
    q.load_state_dict(state)
    q.eval()
    cfg = dict(meta["config"])
    cfg["hidden"] = tuple(cfg["hidden"])
    return TrainedPolicy(q=q, env=meta["env"], config=DQNConfig(**cfg), eval_return=meta["eval_return"],
                         obs_scale=torch.tensor(meta["obs_scale"]),
                         history=[tuple(h) for h in meta["history"]], seconds=0.0)  # type: ignore[misc]
