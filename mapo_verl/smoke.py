"""``python -m mapo_verl smoke``: verl's real trainer runs MAPO for a few steps on CPU, in about two minutes.

1. data: a hub-layout copy of Geometry3K (the real problems of ``../shared/realdata/geo3k`` where present, else
   generated diagrams), prepared by ``python -m data_prep.geo3k`` exactly as a user would;
2. model: a tiny Qwen2.5-VL built locally (:mod:`mapo_verl.cpu.tiny_model`), warm-started on the format the reward
   wants so that rewards vary within groups; cached under ``~/.cache/mapo-verl`` (``$MAPO_VERL_CACHE``);
3. ``python -m verl.trainer.main_ppo`` with the shipped ``mapo_geo3k_qwen2_5_vl_7b`` config overridden to tiny
   sizes, the CPU platform (``VERL_PLATFORM=cpu``) and the ``hf`` rollout; verl's file logger writes
   ``OUT/metrics.jsonl``, checkpoints go to ``OUT/checkpoints``, the full trainer output to ``OUT/main_ppo.log``;
4. a summary: steps run, seconds per step, each step's ``mapo/*`` metrics, where the log and checkpoint are.

Trailing ``key=value`` arguments are Hydra overrides passed to verl (they replace the smoke's own for the same key).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = REPO_ROOT / "trainer_configs"
CONFIG_NAME = "mapo_geo3k_qwen2_5_vl_7b"
REALDATA_GEO3K = REPO_ROOT.parent / "shared" / "realdata" / "geo3k"
HUB_ID = "hiyouga/geometry3k"

SUMMARY_KEYS = (
    "critic/score/mean",
    "actor/pg_loss",
    "actor/grad_norm",
    "actor/kl_loss",
    "training/rollout_probs_diff_max",
    "timing_s/step",
)


def log(msg: str) -> None:
    print(f"[smoke] {msg}", flush=True)


# ------------------------------------------------------------------------------------------------ data
def _geo3k_records_from_realdata(root: Path) -> list[dict]:
    """Geometry3K problems of ``root/<id>/{data.json,img_diagram.png}`` as hub rows (problem, answer, image)."""
    rows = []
    for folder in sorted((p for p in root.iterdir() if (p / "data.json").is_file()), key=lambda p: int(p.name)):
        record = json.loads((folder / "data.json").read_text())
        letter = str(record["answer"]).strip().upper()
        choices = record.get("compact_choices") or record["choices"]
        answer = str(choices[ord(letter) - ord("A")]).strip()
        problem = " ".join(str(record.get("compact_text") or record["problem_text"]).split())
        rows.append(
            {"problem": f"<image>{problem}", "answer": answer, "image": (folder / "img_diagram.png").read_bytes()}
        )
    return rows


def _generated_geo3k_records(count: int = 10, seed: int = 0) -> list[dict]:
    """Right-triangle diagrams with two labelled legs (also named in the text): find the hypotenuse x, rounded."""
    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        a, b = rng.randint(3, 12), rng.randint(3, 12)
        img = Image.new("RGB", (160, 120), "white")
        draw = ImageDraw.Draw(img)
        pts = [(20, 100), (20 + 10 * b, 100), (20, 100 - 7 * a)]
        draw.polygon(pts, outline="black")
        draw.text((4, 100 - 3.5 * a), str(a), fill="black")
        draw.text((20 + 5 * b, 104), str(b), fill="black")
        draw.text((24 + 5 * b, 96 - 3.5 * a), "x", fill="black")
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        answer = f"{(a * a + b * b) ** 0.5:.1f}".rstrip("0").rstrip(".")
        problem = f"<image>The legs of the right triangle are {a} and {b}. Find x. Round to the nearest tenth."
        rows.append({"problem": problem, "answer": answer, "image": buf.getvalue()})
    return rows


def write_hub_copy(dest: Path, rows: list[dict], n_eval: int = 2) -> None:
    """``dest/data/{train,validation,test}-00000-of-00001.parquet`` as ``datasets.load_dataset(dest)`` reads."""
    import datasets

    datasets.disable_progress_bars()
    features = datasets.Features(
        {
            "images": datasets.List(datasets.Image()),
            "problem": datasets.Value("string"),
            "answer": datasets.Value("string"),
        }
    )
    splits = {"train": rows[:-n_eval], "validation": rows[-n_eval:], "test": rows[-n_eval:]}
    (dest / "data").mkdir(parents=True, exist_ok=True)
    for split, split_rows in splits.items():
        hub_rows = [
            {"images": [{"bytes": r["image"], "path": None}], "problem": r["problem"], "answer": r["answer"]}
            for r in split_rows
        ]
        datasets.Dataset.from_list(hub_rows, features=features).to_parquet(
            str(dest / "data" / f"{split}-00000-of-00001.parquet")
        )


def prepare_data(out: Path, source_kind: str = "auto") -> tuple[Path, str]:
    """Run ``python -m data_prep.geo3k`` on a hub-layout copy; returns the prepared folder and the source used.

    ``source_kind``: ``real`` (``../shared/realdata/geo3k``, required), ``generated``, or ``auto`` (real if present).
    """
    if source_kind == "real" and not REALDATA_GEO3K.is_dir():
        raise FileNotFoundError(f"--data real: {REALDATA_GEO3K} not found")
    if source_kind != "generated" and REALDATA_GEO3K.is_dir():
        rows, source = _geo3k_records_from_realdata(REALDATA_GEO3K), f"{REALDATA_GEO3K} (real Geometry3K problems)"
    else:
        rows, source = _generated_geo3k_records(), "generated diagrams (../shared/realdata/geo3k not found)"
    src, prepared = out / "data" / "geo3k_hub_copy", out / "data" / "geo3k"
    write_hub_copy(src, rows)
    cmd = [sys.executable, "-m", "data_prep.geo3k", "--local-dataset-path", str(src), "--local-save-dir", str(prepared)]
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [*cmd, "--no-progress"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"data_prep.geo3k failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    for split in ("train", "test"):
        if not (prepared / f"{split}.parquet").is_file():
            raise RuntimeError(f"data_prep.geo3k wrote no {prepared / f'{split}.parquet'}:\n{result.stdout}")
    return prepared, source


def warm_start_examples(train_parquet: Path):
    """The prepared training rows as warm-start examples (the prompt verl will render, its image, its answer)."""
    import pyarrow.parquet as pq

    from mapo_verl.cpu.tiny_model import WarmStartExample

    examples = []
    for row in pq.read_table(train_parquet).to_pylist():
        content = row["prompt"][-1]["content"]
        images = tuple(img["bytes"] for img in row["images"])
        examples.append(WarmStartExample(question=content, answer=row["reward_model"]["ground_truth"], images=images))
    return examples


# --------------------------------------------------------------------------------------------- trainer
def override_key(override: str) -> str:
    """``+a.b=1`` / ``a.b=1`` / ``~a.b`` -> ``a.b``."""
    return override.split("=", 1)[0].lstrip("+~")


def merge_overrides(base: Sequence[str], user: Sequence[str]) -> list[str]:
    """``base`` with every override whose key the user also sets removed, then the user's, in order."""
    user_keys = {override_key(o) for o in user}
    return [o for o in base if override_key(o) not in user_keys] + list(user)


def smoke_overrides(
    model_dir: Path, data_dir: Path, out: Path, steps: int, estimator: str, prompts: int, n: int
) -> list[str]:
    """The tiny-size overrides of the shipped config (see docs/cpu-smoke.md for why each is there)."""
    return [
        f"algorithm.adv_estimator={estimator}",
        f"data.train_files={data_dir / 'train.parquet'}",
        f"data.val_files={data_dir / 'test.parquet'}",
        f"data.train_batch_size={prompts}",
        "data.max_prompt_length=320",
        "data.max_response_length=48",
        "data.dataloader_num_workers=0",
        "data.mm_processor_kwargs.min_pixels=3136",
        "data.mm_processor_kwargs.max_pixels=12544",
        f"actor_rollout_ref.model.path={model_dir}",
        "actor_rollout_ref.model.trust_remote_code=True",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.model.use_remove_padding=False",
        "actor_rollout_ref.model.enable_gradient_checkpointing=False",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts}",
        "actor_rollout_ref.actor.ppo_max_token_len_per_gpu=8192",
        "actor_rollout_ref.actor.optim.lr=1e-4",
        "actor_rollout_ref.actor.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.strategy=fsdp2",
        "actor_rollout_ref.ref.fsdp_config.strategy=fsdp2",
        "actor_rollout_ref.actor.fsdp_config.use_torch_compile=False",
        "actor_rollout_ref.ref.fsdp_config.use_torch_compile=False",
        "actor_rollout_ref.rollout.name=hf",
        f"actor_rollout_ref.rollout.n={n}",
        "actor_rollout_ref.rollout.tensor_model_parallel_size=1",
        "actor_rollout_ref.rollout.calculate_log_probs=True",
        "actor_rollout_ref.rollout.agent.num_workers=1",
        "reward.num_workers=1",
        "trainer.nnodes=1",
        "trainer.n_gpus_per_node=1",
        "trainer.device=cpu",
        f"trainer.total_training_steps={steps}",
        "trainer.total_epochs=1000",
        f"trainer.save_freq={steps}",
        f"trainer.test_freq={steps}",
        "trainer.val_before_train=True",
        "trainer.resume_mode=disable",
        "trainer.logger=[console,file]",
        "trainer.experiment_name=smoke",
        f"trainer.default_local_dir={out / 'checkpoints'}",
        "ray_kwargs.ray_init.num_cpus=8",
        "+ray_kwargs.ray_init.num_gpus=1",
        "transfer_queue.backend.SimpleStorage.num_data_storage_units=1",
        f"hydra.run.dir={out / 'hydra'}",
    ]


_RAY_PREFIX = re.compile(r"^(?:\x1b\[[0-9;]*m)?\(\w+ pid=\d+(?:, ip=[^)]*)?\)(?:\x1b\[[0-9;]*m)?\s*")
_STEP_LINE = re.compile(r"^step:(\d+) - ")
#: (text in a trainer output line, progress message)
_MARKERS = (
    ("LLMServerManager: ['hf://", "workers and the hf rollout server are up"),
    ("Creating file logger", "trainer ready: validating before training"),
    ("Final validation metrics", "final validation done; saving the checkpoint"),
)


def progress_message(line: str, steps: int) -> str | None:
    """The console progress line for one line of trainer output (Ray's ``(Actor pid=...)`` prefix stripped)."""
    text = _RAY_PREFIX.sub("", line)
    match = _STEP_LINE.match(text)
    if match and int(match.group(1)) >= 1:
        return f"step {match.group(1)}/{steps} done"
    for marker, message in _MARKERS:
        if marker in text:
            return message
    return None


def run_trainer(overrides: list[str], out: Path, steps: int, timeout: float | None) -> tuple[int, float]:
    """``python -m verl.trainer.main_ppo`` as a subprocess; its output goes to ``OUT/main_ppo.log``."""
    cmd = [
        sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        f"--config-path={CONFIG_DIR}",
        f"--config-name={CONFIG_NAME}",
        *overrides,
    ]
    env = {
        **os.environ,
        "VERL_PLATFORM": "cpu",
        "VERL_FILE_LOGGER_PATH": str(out / "metrics.jsonl"),
        "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled"),
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONUNBUFFERED": "1",
        "RAY_DEDUP_LOGS": "0",
    }
    env.pop("RAY_ADDRESS", None)
    log_path = out / "main_ppo.log"
    (out / "command.txt").write_text(" ".join(cmd) + "\n")
    start = time.monotonic()
    tail: list[str] = []
    with open(log_path, "w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(
            cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        assert proc.stdout is not None
        try:
            for line in proc.stdout:
                log_file.write(line)
                tail = [*tail[-79:], line.rstrip()]
                elapsed = time.monotonic() - start
                message = progress_message(line, steps)
                if message:
                    log(f"{message} ({elapsed:.0f} s)")
                if timeout is not None and elapsed > timeout:
                    proc.kill()
                    log(f"timed out after {timeout:.0f} s")
                    break
        finally:
            returncode = proc.wait()
    seconds = time.monotonic() - start
    if returncode != 0:
        log(f"main_ppo exited with status {returncode}; last lines of {log_path}:")
        print("\n".join(tail), flush=True)
    return returncode, seconds


# --------------------------------------------------------------------------------------------- summary
def read_metrics(path: Path) -> list[dict]:
    """verl's file-logger lines: ``{"step": k, "data": {...}}``."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def training_steps(records: list[dict]) -> dict[int, dict]:
    """step -> metrics of the training steps (the records that carry ``actor/pg_loss``)."""
    steps: dict[int, dict] = {}
    for rec in records:
        if "actor/pg_loss" in rec["data"]:
            steps.setdefault(int(rec["step"]), {}).update(rec["data"])
    return steps


def latest_checkpoint(checkpoints: Path) -> Path | None:
    marker = checkpoints / "latest_checkpointed_iteration.txt"
    if not marker.is_file():
        return None
    step = marker.read_text().strip()
    path = checkpoints / f"global_step_{step}"
    return path if path.is_dir() else None


def summary(out: Path, seconds: float) -> str:
    steps = training_steps(read_metrics(out / "metrics.jsonl"))
    lines = [f"[smoke] {len(steps)} training step(s) in {seconds:.0f} s (whole job, Ray start-up included)"]
    for step, data in sorted(steps.items()):
        fields = [f"{k.split('/', 1)[1]}={data[k]:.4g}" for k in SUMMARY_KEYS if k in data and k != "timing_s/step"]
        lines.append(f"  step {step}: {data.get('timing_s/step', float('nan')):.1f} s/step  " + "  ".join(fields))
        mapo = {k: v for k, v in sorted(data.items()) if k.startswith("mapo/")}
        if mapo:
            lines.append("    " + "  ".join(f"{k}={v:.4g}" for k, v in mapo.items()))
        else:
            lines.append("    (no mapo/* metrics in this step's log)")
    ckpt = latest_checkpoint(out / "checkpoints")
    lines += [
        f"  metrics (verl file logger, JSONL): {out / 'metrics.jsonl'}",
        f"  checkpoint: {ckpt if ckpt else 'none written'}",
        f"  trainer output: {out / 'main_ppo.log'}",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mapo_verl smoke",
        description=__doc__.splitlines()[0],
        epilog="Trailing key=value arguments are Hydra overrides for verl's main_ppo.",
    )
    parser.add_argument("--steps", type=int, default=2, help="training steps (2)")
    parser.add_argument("--out", default="out/smoke", help="output folder (out/smoke)")
    parser.add_argument("--estimator", default="mapo", help="algorithm.adv_estimator (mapo; grpo for the baseline)")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per step (4)")
    parser.add_argument("--n", type=int, default=4, help="responses per prompt (4)")
    parser.add_argument(
        "--warm-steps", type=int, default=1000, help="supervised warm-start steps of the tiny model (1000)"
    )
    parser.add_argument("--cache-dir", default=None, help="where the tiny model is cached (~/.cache/mapo-verl)")
    parser.add_argument(
        "--data",
        choices=("auto", "real", "generated"),
        default="auto",
        help="Geometry3K problems from ../shared/realdata (real), generated diagrams, or real where present (auto)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="kill the trainer after this many seconds")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides passed to main_ppo")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.steps < 1 or args.prompts < 1 or args.n < 2:
        print("error: --steps and --prompts must be >= 1 and --n >= 2 (groups need two responses)", file=sys.stderr)
        return 2
    bad = [o for o in args.overrides if "=" not in o and not o.startswith("~")]
    if bad:
        print(f"error: not a Hydra override (key=value): {' '.join(bad)}", file=sys.stderr)
        return 2
    if not (CONFIG_DIR / f"{CONFIG_NAME}.yaml").is_file():
        print(
            f"error: {CONFIG_DIR / CONFIG_NAME}.yaml not found: run the smoke from a checkout of mapo-verl",
            file=sys.stderr,
        )
        return 2
    start = time.monotonic()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.jsonl").unlink(missing_ok=True)

    log("preparing data with python -m data_prep.geo3k ...")
    data_dir, source = prepare_data(out, args.data)
    log(f"data: {data_dir} (from {source})")

    from mapo_verl.cpu.tiny_model import build_tiny_model

    log("tiny Qwen2.5-VL (built and warm-started once, then cached) ...")
    examples = warm_start_examples(data_dir / "train.parquet")
    model_dir = build_tiny_model(
        Path(args.cache_dir) if args.cache_dir else None, examples=examples, warm_steps=args.warm_steps
    )
    log(f"model: {model_dir} ({time.monotonic() - start:.0f} s so far)")

    base = smoke_overrides(model_dir, data_dir, out, args.steps, args.estimator, args.prompts, args.n)
    overrides = merge_overrides(base, args.overrides)
    log(f"python -m verl.trainer.main_ppo --config-name {CONFIG_NAME} + {len(overrides)} overrides (command.txt)")
    log("starting Ray and verl's workers (about a minute on 2 cores) ...")
    returncode, seconds = run_trainer(overrides, out, args.steps, args.timeout)
    print(summary(out, seconds), flush=True)
    log(f"total {time.monotonic() - start:.0f} s")
    return returncode


if __name__ == "__main__":
    sys.exit(main())
