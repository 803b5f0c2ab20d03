"""The end-of-run summary, from verl's own logs: steps, seconds per step, each step's ``mapo/*`` metrics."""

from __future__ import annotations

from mapo_verl.supervise import Outcome
from mapo_verl.verl_log import TRAINING_STEP_KEY, latest_checkpoint, read_records, training_steps
from mapo_verl_cpu.runners.spec import RunSpec

SUMMARY_KEYS = (
    "critic/score/mean",
    TRAINING_STEP_KEY,
    "actor/grad_norm",
    "actor/kl_loss",
    "training/rollout_probs_diff_max",
)
MAPO_PER_LINE = 4


def summary(spec: RunSpec, outcome: Outcome, prefix: str = "[smoke]") -> str:
    """A few lines: how many steps ran, per-step losses and ``mapo/*`` metrics, where the outputs are."""
    steps = training_steps(read_records(spec.metrics_path))
    lines = [f"{prefix} {len(steps)} training step(s) in {outcome.seconds:.0f} s (whole job, Ray start-up included)"]
    if outcome.timed_out:
        lines.append(f"{prefix} TIMED OUT; last progress seen: {outcome.last_progress or 'none'}")
        lines += ["  last trainer output:", *(f"    {line}" for line in outcome.tail[-5:])]
    for step, data in sorted(steps.items()):
        fields = [f"{k.split('/', 1)[1]}={data[k]:.4g}" for k in SUMMARY_KEYS if k in data]
        lines.append(f"  step {step}: {data.get('timing_s/step', float('nan')):.1f} s/step  " + "  ".join(fields))
        mapo = {k: v for k, v in sorted(data.items()) if k.startswith("mapo/")}
        items = [f"{k}={v:.4g}" for k, v in mapo.items()]
        for i in range(0, len(items), MAPO_PER_LINE):
            lines.append("    " + "  ".join(items[i : i + MAPO_PER_LINE]))
        if not mapo:
            lines.append("    (no mapo/* metrics in this step's log)")
    ckpt = latest_checkpoint(spec.checkpoints)
    lines += [
        f"  metrics (verl file logger, JSONL): {spec.metrics_path}",
        f"  checkpoint: {ckpt if ckpt else 'none written'}",
        f"  trainer output: {spec.log_path}",
    ]
    return "\n".join(lines)
