"""Pre-flight check: ``python -m mapo_verl check --config-path DIR --config-name NAME [overrides]``.

Composes the config as ``python -m verl.trainer.main_ppo`` would (:mod:`mapo_verl.compose`), then,
without GPUs, runs verl's own validation
(:func:`verl.utils.config.validate_config` for the declared ``trainer.nnodes x n_gpus_per_node``)
and MAPO's: the estimator is registered, group sizes make sense, the reward is not shaped in a way
that moves correct answers off the success threshold, the reward can reach that threshold, the
data files exist with the columns the config names, the model is named, and the
reward function can be loaded.  Every problem is printed with the config key it concerns; the exit
status is 1 if there is any.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import inspect
import io
import os
import re
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mapo_verl.compose import ComposeError, compose
from mapo_verl.data_sources import preparer_of
from mapo_verl.registry_probe import mapo_registered

#: The reward function the shipped configs use and whose score range we know.
ROUTER_PATH = "pkg://reward_fns.router"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class CheckResult:
    """What the check found, in order: (level, message) with level ok/info/warn/FAIL."""

    lines: list[tuple[str, str]] = field(default_factory=list)

    def ok(self, msg: str) -> None:
        self.lines.append(("ok", msg))

    def info(self, msg: str) -> None:
        self.lines.append(("info", msg))

    def warn(self, msg: str) -> None:
        self.lines.append(("warn", msg))

    def fail(self, msg: str) -> None:
        self.lines.append(("FAIL", msg))

    @property
    def problems(self) -> list[str]:
        return [m for lvl, m in self.lines if lvl == "FAIL"]

    def render(self) -> str:
        out = [f"[{lvl:^4}] {msg}" for lvl, msg in self.lines]
        n = len(self.problems)
        out.append("pre-flight check passed" if n == 0 else f"pre-flight check FAILED: {n} problem(s)")
        return "\n".join(out)


# ----------------------------------------------------------------------------------------- checks
def _files(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def _select(cfg: Any, key: str, default: Any = None) -> Any:
    from omegaconf import OmegaConf

    return OmegaConf.select(cfg, key, default=default)


# ------------------------------------------------------------------------- verl's facts, from verl
def verl_group_estimators() -> frozenset[str]:
    """Registered estimators that compare the responses of one prompt.

    verl's ``compute_advantage`` hands the prompt groups (``index=uid``) to exactly the estimators
    whose function takes an ``index`` parameter; read off the registry, so it follows verl.
    """
    from verl.trainer.ppo import core_algos

    return frozenset(
        name for name, fn in core_algos.ADV_ESTIMATOR_REGISTRY.items() if "index" in inspect.signature(fn).parameters
    )


def verl_placeholder_model_path() -> str:
    """The model path verl's default config ships (``model/hf_model.yaml``): a config with it names no model."""
    from importlib.resources import files

    from omegaconf import OmegaConf

    from mapo_verl.compose import VERL_CONFIG_MODULE

    return str(OmegaConf.load(str(files(VERL_CONFIG_MODULE) / "model" / "hf_model.yaml")).path)


def check_resolves(cfg: Any, report: CheckResult) -> bool:
    """Every interpolation resolves (env variables, ``${mapo_data_dir}``...)."""
    from omegaconf import OmegaConf

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except Exception as err:
        report.fail(f"the config does not resolve: {err}")
        return False
    missing = sorted(OmegaConf.missing_keys(cfg))
    if not _select(cfg, "reward.reward_model.enable", False):  # verl's reward-model section: unused then
        missing = [k for k in missing if not k.startswith("reward.reward_model.")]
    if missing:
        report.fail(f"mandatory value(s) not set (??? in the config): {', '.join(missing)}")
        return False
    return True


def check_plugin(cfg: Any, report: CheckResult) -> None:
    """The estimator named by ``algorithm.adv_estimator`` resolves where verl looks it up."""
    estimator = str(_select(cfg, "algorithm.adv_estimator"))
    try:
        registered = mapo_registered()  # `import verl` loads the verl.plugins entry points, as in every Ray actor
        from verl.trainer.ppo import core_algos
    except Exception:
        report.fail(f"cannot import verl:\n{traceback.format_exc()}")
        return
    if not registered:
        try:
            importlib.import_module("mapo_verl.verl_plugin")
            detail = "the verl.plugins entry point did not load it (VERL_USE_EXTERNAL_PLUGINS? pip install -e .?)"
        except Exception as err:
            detail = f"mapo_verl.verl_plugin fails to import: {err!r}"
        report.fail(f"the mapo estimator is not registered after `import verl`: {detail}")
    else:
        report.ok("plugin: `import verl` registers the mapo estimator")
    builtin = {e.value for e in core_algos.AdvantageEstimator}
    if estimator in ("gae", "grpo") or estimator in builtin or estimator in core_algos.ADV_ESTIMATOR_REGISTRY:
        report.ok(f"algorithm.adv_estimator={estimator} is known to verl")
    else:
        report.fail(
            f"algorithm.adv_estimator={estimator} is not a registered advantage estimator (verl would only fail "
            f"at the first training step); known: {', '.join(sorted(core_algos.ADV_ESTIMATOR_REGISTRY))}"
        )


def _vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def check_verl(cfg: Any, report: CheckResult) -> None:
    """verl's own ``validate_config``, as ``main_ppo`` runs it, for the declared GPU count."""
    from omegaconf import OmegaConf
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    nnodes = int(_select(cfg, "trainer.nnodes", 1))
    per_node = int(_select(cfg, "trainer.n_gpus_per_node", 1))
    n_gpus = nnodes * per_node
    if n_gpus < 1:
        report.fail(
            f"trainer.nnodes={nnodes} x trainer.n_gpus_per_node={per_node} = {n_gpus} GPUs: nothing to train on. "
            "Under Slurm, ask for GPUs (sbatch --gpus-per-node=G) or set RAY_NUM_GPUS; elsewhere set "
            "trainer.n_gpus_per_node (a CPU machine runs `python -m mapo_verl smoke`)"
        )
        return
    target = cfg
    lora_rank = int(_select(cfg, "actor_rollout_ref.model.lora_rank", 0) or 0) or int(
        _select(cfg, "actor_rollout_ref.model.lora.rank", 0) or 0
    )
    if lora_rank > 0 and _select(cfg, "actor_rollout_ref.rollout.name") == "vllm" and not _vllm_available():
        report.warn(
            f"LoRA rank {lora_rank}: verl checks it against vLLM's limits, and vLLM is not installed here; "
            "run the check on a GPU node to cover that too"
        )
        target = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
        OmegaConf.update(target, "actor_rollout_ref.model.lora_rank", 0)
        if _select(target, "actor_rollout_ref.model.lora.rank") is not None:
            OmegaConf.update(target, "actor_rollout_ref.model.lora.rank", 0)
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), _quiet_warnings():
            validate_config(
                config=target,
                use_reference_policy=need_reference_policy(target),
                use_critic=need_critic(target),
            )
    except Exception as err:
        msg = str(err) or type(err).__name__
        report.fail(f"verl's validate_config for {nnodes} node(s) x {per_node} GPU(s) = {n_gpus}: {msg}")
        return
    report.ok(f"verl's validate_config passes for {nnodes} node(s) x {per_node} GPU(s) = {n_gpus} GPUs")

    n = int(_select(cfg, "actor_rollout_ref.rollout.n", 1))
    prompts = int(_select(cfg, "data.train_batch_size", 1))
    mini = int(_select(cfg, "actor_rollout_ref.actor.ppo_mini_batch_size", prompts))
    if (prompts * n) % n_gpus:
        report.fail(
            f"data.train_batch_size={prompts} prompts x n={n} = {prompts * n} responses per step do not split "
            f"evenly over {n_gpus} GPUs"
        )
    if prompts % mini:
        report.warn(
            f"data.train_batch_size={prompts} is not a multiple of actor_rollout_ref.actor.ppo_mini_batch_size={mini}"
        )

    rollout = "actor_rollout_ref.rollout"
    tp = int(_select(cfg, f"{rollout}.tensor_model_parallel_size", 1) or 1)
    dp = int(_select(cfg, f"{rollout}.data_parallel_size", 1) or 1)
    pp = int(_select(cfg, f"{rollout}.pipeline_model_parallel_size", 1) or 1)
    replica = tp * dp * pp
    if replica > n_gpus or n_gpus % replica:
        report.fail(
            f"{rollout}.tensor_model_parallel_size={tp} (x data {dp} x pipeline {pp}) = {replica} GPUs per vLLM "
            f"replica does not divide the {n_gpus} GPUs declared by trainer.nnodes x trainer.n_gpus_per_node"
        )
    elif replica > per_node:
        report.warn(f"one rollout replica ({replica} GPUs) spans nodes of {per_node} GPUs")


@contextlib.contextmanager
def _quiet_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def reachable_scores(format_weight: float) -> list[float]:
    """The scores ``reward_fns.router`` can give: its own composition of acc and format, each in {0, 1}."""
    from reward_fns.common import compose_score

    return sorted({compose_score(acc, fmt, format_weight)["score"] for acc in (0.0, 1.0) for fmt in (0.0, 1.0)})


#: Where verl 0.9.1's ``dapo`` reward manager reads its overlong penalty (``reward_model.*``: the legacy
#: spelling that verl migrates to ``reward.*``).
OVERLONG_KEYS = ("reward.reward_kwargs.overlong_buffer_cfg", "reward_model.reward_kwargs.overlong_buffer_cfg")


def check_shaping(cfg: Any, report: CheckResult) -> None:
    """No reward shaping that moves correct answers off MAPO's success threshold.

    ``algorithm.use_kl_in_reward`` is refused by the estimator's own settings (:func:`check_mapo`);
    here: the ``dapo`` reward manager's overlong penalty, which adds a negative amount to the score
    of every long response, correct or not.
    """
    manager = _select(cfg, "reward.reward_manager.name")
    success_key = _select(cfg, "algorithm.mapo.success_key")
    for key in OVERLONG_KEYS:
        if manager == "dapo" and _select(cfg, f"{key}.enable", False) and success_key is not None:
            report.ok(
                f"{key}.enable=true with algorithm.mapo.success_key={success_key}: p counts the reward's "
                f"{success_key} field, so the penalty shapes the advantage without hiding correct answers (the "
                "penalised score must stay >= algorithm.mapo.reward_min)"
            )
        elif manager == "dapo" and _select(cfg, f"{key}.enable", False):
            report.fail(
                f"{key}.enable=true with reward.reward_manager.name=dapo: the overlong penalty lowers the score of "
                "long correct answers below algorithm.mapo.success_threshold, so they count as failures and p is "
                f"understated; set {key}.enable=false (bound the length with data.max_response_length instead), "
                "or declare the reward's correctness field: +algorithm.mapo.success_key=acc"
            )


def all_wrong_group(group_size: int, format_weight: float) -> tuple[float, float]:
    """(MAPO, GRPO) advantage of the one well-formatted answer in a group where none is correct.

    Its score is ``format_weight``, the others' 0: p = 0 and lambda = 1, so MAPO gives it APD = G - 1.
    """
    import torch

    from mapo_verl.mixed_advantage import compute_mixed_advantage, group_ids_from_index

    scores = torch.tensor([format_weight] + [0.0] * (group_size - 1), dtype=torch.float64)
    groups = group_ids_from_index([0] * group_size)
    mapo, grpo = (float(compute_mixed_advantage(scores, groups, lambda_fn=fn).advantage[0]) for fn in ("tcr", "zero"))
    return mapo, grpo


def check_mapo(cfg: Any, report: CheckResult) -> None:
    """MAPO's own settings: they parse, groups have >= 2 responses, the reward is unshaped and fits the threshold."""
    from mapo_verl.verl_plugin import settings_from_config

    estimator = str(_select(cfg, "algorithm.adv_estimator"))
    n = int(_select(cfg, "actor_rollout_ref.rollout.n", 1))
    if estimator in verl_group_estimators():
        if n < 2:
            report.fail(
                f"actor_rollout_ref.rollout.n={n}: {estimator} compares the responses to one prompt and needs "
                "n >= 2 (the paper uses 12); with n=1 every advantage is 0 and nothing is learned"
            )
        else:
            report.ok(f"actor_rollout_ref.rollout.n={n} responses per prompt")
    if estimator != "mapo":
        if _select(cfg, "algorithm.mapo") is not None:
            report.info(f"algorithm.mapo is set but unused: algorithm.adv_estimator={estimator}")
        return
    try:
        settings = settings_from_config(_select(cfg, "algorithm"))  # refuses KL in the reward without a success_key
    except ValueError as err:
        report.fail(str(err))
        return
    report.ok(
        f"algorithm.mapo: success_threshold={settings.success_threshold:g}, reward_min={settings.reward_min:g}, "
        f"lambda_fn={settings.lambda_fn}, epsilon={settings.epsilon:g}, "
        f"norm_adv_by_std_in_grpo={settings.norm_adv_by_std}, success_key={settings.success_key}; "
        f"algorithm.use_kl_in_reward={bool(_select(cfg, 'algorithm.use_kl_in_reward', False))}"
    )
    check_shaping(cfg, report)
    reward_path = _select(cfg, "reward.custom_reward_function.path")
    if reward_path != ROUTER_PATH:
        report.info(
            f"reward.custom_reward_function.path={reward_path}: not {ROUTER_PATH}, so the reachability of "
            f"algorithm.mapo.success_threshold={settings.success_threshold:g} and algorithm.mapo.reward_min="
            f"{settings.reward_min:g} is not checked"
        )
        return
    check_router_scores(cfg, report, settings, n)


def check_router_scores(cfg: Any, report: CheckResult, settings: Any, group_size: int) -> None:
    """With ``reward_fns.router``: the threshold is reachable but not by all, the floor is right, the format bonus."""
    import torch

    from mapo_verl.mixed_advantage import is_success
    from reward_fns.common import DEFAULT_FORMAT_WEIGHT, check_format_weight

    key = "reward.custom_reward_function.reward_kwargs.format_weight"
    raw_w = _select(cfg, key, DEFAULT_FORMAT_WEIGHT)
    try:
        w = check_format_weight(raw_w)  # the reward's own validation
    except ValueError:
        report.fail(f"{key}={raw_w!r} must lie in [0, 1]")
        return
    scores = reachable_scores(w)
    thr = settings.success_threshold
    success = is_success(torch.tensor(scores, dtype=torch.float64), thr)  # the estimator's own rule
    successes = [s for s, ok in zip(scores, success.tolist(), strict=True) if ok]
    shown = ", ".join(f"{s:g}" for s in scores)
    if not successes:
        report.fail(
            f"algorithm.mapo.success_threshold={thr:g} is never reached: with format_weight={w:g} the router scores "
            f"{shown}; every group would have p = 0 (use 1.0: correct and well formatted)"
        )
    elif len(successes) == len(scores):
        report.fail(
            f"algorithm.mapo.success_threshold={thr:g} is reached by every response (the router scores {shown} "
            f"with format_weight={w:g}); every group would have p = 1"
        )
    else:
        report.ok(f"success is reachable: router scores {shown} (format_weight={w:g}), success >= {thr:g}")
    if settings.reward_min > scores[0]:
        report.fail(
            f"algorithm.mapo.reward_min={settings.reward_min:g} lies above the router's lowest score {scores[0]:g}: "
            f"the estimator would stop at step 1; set algorithm.mapo.reward_min={scores[0]:g}"
        )
    elif settings.reward_min < scores[0]:
        report.info(
            f"algorithm.mapo.reward_min={settings.reward_min:g} lies below the router's lowest score {scores[0]:g}: "
            "APD measures from that floor, not from the paper's (use the lowest score for the paper's values)"
        )
    if w > 0 and group_size >= 2:
        mapo, grpo = all_wrong_group(group_size, w)
        report.warn(
            f"{key}={w:g}: in a group where no answer is correct (p = 0, lambda = 1) a well-formatted wrong answer "
            f"scores {w:g} and gets the advantage {mapo:+.1f} = G - 1 at G={group_size} (GRPO: {grpo:+.1f}); "
            "that is the paper's APD; set format_weight=0 if format alone should not be rewarded so strongly "
            "(docs/estimator.md)"
        )


def _parquet_columns_and_rows(path: str) -> tuple[list[str], int]:
    """A parquet file's column names and row count, from its footer (no data is read)."""
    import pyarrow.parquet as pq

    metadata = pq.read_metadata(path)
    return list(metadata.schema.to_arrow_schema().names), metadata.num_rows


def _prepare_hint(path: str) -> str:
    """How to write ``path``: the data_prep command for its folder (``NAME`` or ``NAME_paper``)."""
    module, options = preparer_of(path)
    folder = Path(path).parent
    if module == "-":
        return f"no data_prep preparer writes {folder.name}/; point the config at your own parquet"
    return f"prepare it: python -m data_prep.{module} {options + ' ' if options else ''}--local-save-dir {folder}"


def check_data(cfg: Any, report: CheckResult) -> None:
    """Train and validation parquet files exist, have the prompt/image columns the config names, and rows: verl
    stops on an empty validation set, and on a training set smaller than one batch (its train loader drops the
    last incomplete batch, so it would have no step at all)."""
    image_key = str(_select(cfg, "data.image_key", "images"))
    prompt_key = str(_select(cfg, "data.prompt_key", "prompt"))
    reward_key = str(_select(cfg, "data.reward_fn_key", "data_source"))
    needed = [prompt_key, image_key, reward_key, "reward_model"]
    for key in ("data.train_files", "data.val_files"):
        files = _files(_select(cfg, key))
        rows: dict[str, int] = {}  # local file -> its row count
        check_files(key, files, needed, report, rows)
        check_rows(cfg, key, rows, all_read=len(rows) == len(files), report=report)


def check_rows(cfg: Any, key: str, rows: dict[str, int], all_read: bool, report: CheckResult) -> None:
    """No file of ``key`` without rows; the training files together hold at least ``data.train_batch_size`` rows
    (checked when every file could be read)."""
    for local, count in rows.items():
        if count == 0:
            report.fail(f"{key}: {local} has 0 rows ({_prepare_hint(local)})")
    if key != "data.train_files" or not all_read or not rows:
        return
    batch = int(_select(cfg, "data.train_batch_size", 1) or 1)
    total = sum(rows.values())
    if 0 < total < batch:
        where = ", ".join(f"{local} ({count})" for local, count in rows.items())
        report.fail(
            f"{key}: {total} row(s) in all ({where}), fewer than one batch of data.train_batch_size={batch}: verl's "
            "train loader drops the incomplete batch and has no step to run; prepare more rows or lower "
            "data.train_batch_size"
        )


def check_files(key: str, files: list[str], needed: list[str], report: CheckResult, rows: dict[str, int]) -> None:
    """Each local file of ``key`` exists and has the ``needed`` columns; its row count goes into ``rows``."""
    prompt_key, image_key, reward_key = needed[:3]
    if not files:
        report.fail(f"{key} is empty")
    for f in files:
        if "://" in f and not f.startswith("file://"):
            report.info(f"{key}: {f} is remote; not checked")
            continue
        local = os.path.expanduser(f.removeprefix("file://"))
        if not os.path.isfile(local):
            report.fail(f"{key}: {local} does not exist ({_prepare_hint(local)})")
            continue
        try:
            columns, rows[local] = _parquet_columns_and_rows(local)
        except Exception as err:
            report.fail(f"{key}: {local} is not a readable parquet file: {err}")
            continue
        missing = [c for c in needed if c not in columns]
        if missing:
            report.fail(
                f"{key}: {local} lacks column(s) {', '.join(missing)} named by data.prompt_key={prompt_key}, "
                f"data.image_key={image_key}, data.reward_fn_key={reward_key}; it has {', '.join(columns)}"
            )
        else:
            report.ok(f"{key}: {local}, {rows[local]} rows ({prompt_key}, {image_key}, {reward_key}, reward_model)")


def check_model(cfg: Any, report: CheckResult) -> None:
    """``actor_rollout_ref.model.path`` names a local model directory or a Hugging Face Hub id."""
    path = _select(cfg, "actor_rollout_ref.model.path")
    key = "actor_rollout_ref.model.path"
    placeholder = verl_placeholder_model_path()
    if not path or str(path) == placeholder:
        report.fail(
            f"{key} is not set (verl's placeholder {placeholder}); name a model, e.g. Qwen/Qwen2.5-VL-7B-Instruct"
        )
        return
    path = str(path)
    local = Path(os.path.expanduser(path))
    looks_local = path.startswith(("/", "~", ".")) or local.exists()
    if looks_local:
        if not local.is_dir():
            report.fail(f"{key}={path}: no such directory")
        elif not (local / "config.json").is_file():
            report.fail(f"{key}={path}: no config.json there (not a Hugging Face model directory)")
        else:
            report.ok(f"{key}={path} (local model directory)")
    elif _HUB_ID.match(path):
        report.ok(f"{key}={path} (Hugging Face Hub id: every node downloads it or reads its HF cache)")
    else:
        report.fail(f"{key}={path}: neither an existing directory nor a Hub id of the form org/name")


def check_reward(cfg: Any, report: CheckResult) -> None:
    """The custom reward function loads (verl only loads it in the reward workers, after model loading)."""
    path = _select(cfg, "reward.custom_reward_function.path")
    name = _select(cfg, "reward.custom_reward_function.name") or "compute_score"
    if not path:
        report.info("reward.custom_reward_function.path is not set: verl's default_compute_score is used")
        return
    try:
        from verl.utils.import_utils import load_extern_object

        fn = load_extern_object(module_path=str(path), object_name=str(name))
    except Exception as err:
        report.fail(f"reward.custom_reward_function: cannot load {name} from {path}: {err!r}")
        return
    if not callable(fn):
        report.fail(f"reward.custom_reward_function: {path}:{name} is not callable")
    else:
        report.ok(f"reward.custom_reward_function: {path}:{name} loads")


def run_checks(cfg: Any) -> CheckResult:
    """All checks on a composed config."""
    report = CheckResult()
    report.info(
        f"algorithm.adv_estimator={_select(cfg, 'algorithm.adv_estimator')}, model "
        f"{_select(cfg, 'actor_rollout_ref.model.path')}, trainer.nnodes={_select(cfg, 'trainer.nnodes')} x "
        f"trainer.n_gpus_per_node={_select(cfg, 'trainer.n_gpus_per_node')}"
    )
    if not check_resolves(cfg, report):
        return report
    for check in (check_plugin, check_verl, check_mapo, check_model, check_data, check_reward):
        try:
            check(cfg, report)
        except Exception:
            report.fail(f"{check.__name__} crashed:\n{traceback.format_exc()}")
    return report


def main(config_path: str | None, config_name: str, overrides: list[str]) -> int:
    """Compose, check, print; 0 when all is well, 1 on any problem."""
    try:
        cfg = compose(config_path, config_name, overrides)
    except ComposeError as err:
        print(f"[FAIL] {err}\npre-flight check FAILED: 1 problem(s)")
        return 1
    report = run_checks(cfg)
    print(report.render())
    return 0 if not report.problems else 1
