"""Part 2: a controlled policy-gradient simulation of GRPO-style training.

The task (one instance per seed and preset; every estimator sees the same one)
-------------------------------------------------------------------------------
P prompts, K candidate answers each.  Prompt j has answer features phi_j in R^{K x d}
(i.i.d. N(0, 1)) and a latent difficulty u_j in [0, 1].  A hidden teacher fixes the correct
answer c_j = argmax_k phi_jk . t_j, with t_j = cos(a_j) t_easy + sin(a_j) t_hard, a_j = (pi/2) s u_j
for two orthonormal "skills" t_easy, t_hard and ``skill_shift`` s in [0, 1]: with s = 0 every
prompt needs the same skill (learning easy prompts solves hard ones), with s = 1 the hardest
need an orthogonal one, and no single theta fits all prompts (a real easy/hard trade-off).
The difficulty also sets a frozen prior bias on the correct answer.  The policy is a softmax
with parameters theta in R^d shared by all prompts (so an update on one prompt moves every
other, as in a real model):

    pi_theta(k | j) = softmax_k(phi_jk . theta + b_jk),   b_jk = [k = c_j] * (logit q(u_j) + log(K - 1))
    logit q(u)      = (1 - u) * logit(q_easy) + u * logit(q_hard)

so at theta = 0 the correct answer has probability q(u_j): q_easy for u = 0, q_hard for u = 1.
Prompts with u >= 1/2 are "hard", the rest "easy".  Difficulty presets draw u from
w * Beta(2, 5) + (1 - w) * Beta(5, 2) (easy-heavy w = 0.8, hard-heavy w = 0.2) or U(0, 1).

Training (verl's GRPO loop in miniature)
----------------------------------------
Each step draws B prompts without replacement, G rollouts each (inverse-CDF sampling from a
pre-drawn uniform, so all estimators share their random numbers), reward r = [answer = c_j],
advantages from the estimator through verl's registry, then ``ppo_epochs`` x ``minibatches``
Adam steps on verl's clipped surrogate (``compute_policy_loss_vanilla``: PPO clip eps, dual clip
c = 3 for A < 0, token-mean aggregation):

    rho = exp(log pi_theta - log pi_old),   L = mean_i max(-A_i rho_i, -A_i clip(rho_i, 1-eps, 1+eps))
    (and, for A_i < 0, min(that, -c A_i))

Adam is invariant to a global rescaling of the advantages, so estimators compare by how they
*distribute* the signal across groups, not by their overall scale (as in LLM training).

Accuracy is the exact expected accuracy mean_j pi_theta(c_j | j) over all P prompts, evaluated
after every step (no sampling noise).  All (estimator, seed) runs are batched into one tensor;
Adam is element-wise and the summed loss separates, so each run is independent.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from mapo_verl_cpu.experiments.study.estimators import EstimatorSpec, compute_advantages, group_uids

#: Weight of the easy component w in w * Beta(2, 5) + (1 - w) * Beta(5, 2); None: U(0, 1).
PRESETS: dict[str, float | None] = {"easy-heavy": 0.8, "hard-heavy": 0.2, "uniform": None}


@dataclass(frozen=True)
class SimConfig:
    """Everything that defines one simulated training run (besides the estimator and seed)."""

    preset: str = "uniform"
    num_prompts: int = 512
    num_answers: int = 8
    feature_dim: int = 16
    batch_prompts: int = 16
    group_size: int = 12
    steps: int = 150
    ppo_epochs: int = 2
    minibatches: int = 2
    lr: float = 0.03
    clip_ratio: float = 0.2
    clip_ratio_c: float = 3.0
    q_easy: float = 0.9
    q_hard: float = 0.01
    hard_threshold: float = 0.5
    skill_shift: float = 0.5
    seeds: tuple[int, ...] = field(default_factory=lambda: tuple(range(8)))

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {', '.join(PRESETS)}")
        if self.group_size < 2:
            raise ValueError("group_size must be >= 2 (a group of one has no relative signal)")
        if self.batch_prompts > self.num_prompts:
            raise ValueError("batch_prompts must not exceed num_prompts")
        if self.batch_prompts % self.minibatches:
            raise ValueError("batch_prompts must be divisible by minibatches")
        if not 0.0 < self.q_hard < self.q_easy < 1.0:
            raise ValueError("need 0 < q_hard < q_easy < 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Task:
    """The prompts of one (seed, preset), stacked over seeds: leading dim S."""

    phi: torch.Tensor  # (S, P, K, d) answer features
    bias: torch.Tensor  # (S, P, K) frozen prior bias
    correct: torch.Tensor  # (S, P) int64
    difficulty: torch.Tensor  # (S, P) u in [0, 1]
    hard: torch.Tensor  # (S, P) bool
    batches: torch.Tensor  # (S, steps, B) prompt ids per step
    uniforms: torch.Tensor  # (S, steps, B, G) sampling noise shared by all estimators


@dataclass
class SimResult:
    """Accuracy after each step (index 0 = before training): arrays (E, S, steps + 1)."""

    config: SimConfig
    estimators: list[str]
    acc_all: np.ndarray
    acc_hard: np.ndarray
    acc_easy: np.ndarray
    hard_fraction: np.ndarray  # (S,)
    weight_ess: np.ndarray  # (E, S, steps) (sum|A|)^2 / (n sum A^2): how evenly the push is spread
    hard_push: np.ndarray  # (E, S, steps) share of sum|A| that goes to hard prompts


def _logit(q: float) -> float:
    return math.log(q / (1.0 - q))


def _rng(seed: int, preset: str, stream: str) -> np.random.Generator:
    """Independent, reproducible generator per (seed, preset, stream); no estimator in the key."""
    return np.random.default_rng([seed, zlib.crc32(preset.encode()), zlib.crc32(stream.encode())])


def sample_difficulty(rng: np.random.Generator, preset: str, n: int) -> np.ndarray:
    """u ~ w Beta(2, 5) + (1 - w) Beta(5, 2), or U(0, 1) for ``uniform``."""
    w = PRESETS[preset]
    if w is None:
        return rng.uniform(0.0, 1.0, n)
    easy = rng.uniform(size=n) < w
    return np.where(easy, rng.beta(2.0, 5.0, n), rng.beta(5.0, 2.0, n))


def make_task(cfg: SimConfig) -> Task:
    """Build the stacked task for all of ``cfg.seeds`` (deterministic in the seed and preset)."""
    p, k, d, b, g, steps = (
        cfg.num_prompts,
        cfg.num_answers,
        cfg.feature_dim,
        cfg.batch_prompts,
        cfg.group_size,
        cfg.steps,
    )
    phis, biases, corrects, diffs, batches, uniforms = [], [], [], [], [], []
    for seed in cfg.seeds:
        rng = _rng(seed, cfg.preset, "task")
        phi = rng.standard_normal((p, k, d))
        u = sample_difficulty(rng, cfg.preset, p)
        basis, _ = np.linalg.qr(rng.standard_normal((d, 2)))  # two orthonormal skills
        angle = 0.5 * math.pi * cfg.skill_shift * u
        teacher = np.cos(angle)[:, None] * basis[:, 0] + np.sin(angle)[:, None] * basis[:, 1]  # (P, d)
        correct = np.argmax(np.einsum("pkd,pd->pk", phi, teacher), axis=1)
        logit_q = (1.0 - u) * _logit(cfg.q_easy) + u * _logit(cfg.q_hard)
        bias = np.zeros((p, k))
        bias[np.arange(p), correct] = logit_q + math.log(k - 1)
        batch_rng, roll_rng = _rng(seed, cfg.preset, "batches"), _rng(seed, cfg.preset, "rollouts")
        batches.append(np.stack([batch_rng.permutation(p)[:b] for _ in range(steps)]))
        uniforms.append(roll_rng.uniform(size=(steps, b, g)))
        phis.append(phi)
        biases.append(bias)
        corrects.append(correct)
        diffs.append(u)
    diff = torch.tensor(np.stack(diffs), dtype=torch.float32)
    return Task(
        phi=torch.tensor(np.stack(phis), dtype=torch.float32),
        bias=torch.tensor(np.stack(biases), dtype=torch.float32),
        correct=torch.tensor(np.stack(corrects), dtype=torch.int64),
        difficulty=diff,
        hard=diff >= cfg.hard_threshold,
        batches=torch.tensor(np.stack(batches), dtype=torch.int64),
        uniforms=torch.tensor(np.stack(uniforms), dtype=torch.float32),
    )


def clipped_surrogate(
    log_prob: torch.Tensor, old_log_prob: torch.Tensor, advantages: torch.Tensor, clip: float, clip_c: float
) -> torch.Tensor:
    """Per-response loss of verl's ``compute_policy_loss_vanilla`` (before aggregation).

    l = max(-A rho, -A clip(rho, 1 - eps, 1 + eps)); for A < 0 also capped at -c A (dual clip).
    """
    ratio = torch.exp(torch.clamp(log_prob - old_log_prob, -20.0, 20.0))
    loss1 = -advantages * ratio
    loss2 = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    clipped = torch.maximum(loss1, loss2)
    dual = torch.minimum(-advantages * clip_c, clipped)
    return torch.where(advantages < 0, dual, clipped)


def _accuracy(task: Task, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exact expected accuracy over all prompts: all, hard, easy; each (E, S)."""
    logits = torch.einsum("spkd,esd->espk", task.phi, theta) + task.bias
    p_correct = torch.softmax(logits, -1).gather(-1, task.correct.expand(theta.shape[0], -1, -1).unsqueeze(-1))
    p_correct = p_correct.squeeze(-1)
    hard = task.hard.to(p_correct.dtype)
    easy = 1.0 - hard
    return (
        p_correct.mean(-1),
        (p_correct * hard).sum(-1) / hard.sum(-1).clamp_min(1.0),
        (p_correct * easy).sum(-1) / easy.sum(-1).clamp_min(1.0),
    )


def _diagnostics(advantages: torch.Tensor, hard: torch.Tensor, ess_out: np.ndarray, hard_out: np.ndarray) -> None:
    """Per run, into the (E, S) outputs: ESS = (sum_i |A_i|)^2 / (n sum_i A_i^2) in (0, 1] (1: every
    response pushed equally hard; small: a few responses dominate the update) and the share of
    sum_i |A_i| on hard prompts.  NaN where every advantage is 0."""
    a = advantages.abs().flatten(2).double()  # (E, S, B*G)
    total = a.sum(-1)
    ok = total > 0
    ess = total**2 / (a.shape[-1] * (a**2).sum(-1)).clamp_min(1e-300)
    on_hard = (advantages.abs().double() * hard[None, :, :, None]).flatten(2).sum(-1)
    ess_out[...] = torch.where(ok, ess, torch.nan).numpy()
    hard_out[...] = torch.where(ok, on_hard / total.clamp_min(1e-300), torch.nan).numpy()


def simulate(
    cfg: SimConfig,
    specs: Sequence[EstimatorSpec],
    on_step: Callable[[], None] | None = None,
) -> SimResult:
    """Train one policy per (estimator, seed) on the same task and random numbers; see module doc."""
    task = make_task(cfg)
    e_count, s_count = len(specs), len(cfg.seeds)
    b, g, k = cfg.batch_prompts, cfg.group_size, cfg.num_answers
    theta = torch.zeros(e_count, s_count, cfg.feature_dim, requires_grad=True)
    optimizer = torch.optim.Adam([theta], lr=cfg.lr)
    uid = group_uids(s_count * b, g)
    seed_ix = torch.arange(s_count)[:, None]
    mb = b // cfg.minibatches

    acc = np.zeros((3, e_count, s_count, cfg.steps + 1))
    ess = np.full((e_count, s_count, cfg.steps), np.nan)
    hard_push = np.full((e_count, s_count, cfg.steps), np.nan)
    with torch.no_grad():
        for i, a in enumerate(_accuracy(task, theta)):
            acc[i, :, :, 0] = a.numpy()

    for step in range(cfg.steps):
        idx = task.batches[:, step]  # (S, B)
        phi_b, bias_b, correct_b = task.phi[seed_ix, idx], task.bias[seed_ix, idx], task.correct[seed_ix, idx]
        with torch.no_grad():
            logits = torch.einsum("sbkd,esd->esbk", phi_b, theta) + bias_b
            cdf = torch.softmax(logits, -1).cumsum(-1)
            u = task.uniforms[:, step][None, :, :, :, None]  # (1, S, B, G, 1)
            answers = (u >= cdf[:, :, :, None, :]).sum(-1).clamp_max(k - 1)  # (E, S, B, G)
            old_log_prob = torch.log_softmax(logits, -1).gather(-1, answers)
            rewards = (answers == correct_b[None, :, :, None]).to(torch.float32)
        advantages = torch.stack(
            [compute_advantages(spec, rewards[e].reshape(-1), uid).view(s_count, b, g) for e, spec in enumerate(specs)]
        )
        _diagnostics(advantages, task.hard[seed_ix, idx], ess[:, :, step], hard_push[:, :, step])

        for _epoch in range(cfg.ppo_epochs):
            for start in range(0, b, mb):
                sl = slice(start, start + mb)
                logits = torch.einsum("sbkd,esd->esbk", phi_b[:, sl], theta) + bias_b[:, sl]
                log_prob = torch.log_softmax(logits, -1).gather(-1, answers[:, :, sl])
                loss = clipped_surrogate(
                    log_prob, old_log_prob[:, :, sl], advantages[:, :, sl], cfg.clip_ratio, cfg.clip_ratio_c
                )
                optimizer.zero_grad(set_to_none=True)
                loss.mean(dim=(2, 3)).sum().backward()  # token-mean per run; runs are independent
                optimizer.step()

        with torch.no_grad():
            for i, a in enumerate(_accuracy(task, theta)):
                acc[i, :, :, step + 1] = a.numpy()
        if on_step is not None:
            on_step()

    return SimResult(
        config=cfg,
        estimators=[s.key for s in specs],
        acc_all=acc[0],
        acc_hard=acc[1],
        acc_easy=acc[2],
        hard_fraction=task.hard.float().mean(-1).numpy(),
        weight_ess=ess,
        hard_push=hard_push,
    )


def steps_to_target(curves: np.ndarray, target: float) -> np.ndarray:
    """First step whose accuracy is >= ``target``, per curve (last axis = steps); NaN if never."""
    reached = curves >= target
    first = np.argmax(reached, axis=-1).astype(float)
    first[~reached.any(axis=-1)] = np.nan
    return first
