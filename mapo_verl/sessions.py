"""Agent loops that return several outputs per session: MAPO's groups are sessions, as verl's GRPO groups are.

verl 0.9.1's V1 trainer keys each trajectory ``{uid}_{session_id}_{index}`` (``v1/agent_loop_tq.py``): ``session_id``
is one of the prompt's ``rollout.n`` rollouts, ``index`` one output of that rollout's agent loop (a loop that
manages its context may return several). ``v1/utils.py:compute_advantage_for_multi_trajectories`` computes GRPO's
group statistics from each session's final output (the highest ``index``) and broadcasts the result to the
session's other outputs, but only for ``grpo``: every other estimator gets every output as a group member, so p, mu
and sigma would count intermediate outputs.

In a run that selects ``mapo`` (:mod:`mapo_verl.run_hooks`), :func:`install` puts :func:`by_session` in front of
that function: for ``mapo`` it computes the advantage of each session's final output (the estimator sees one row
per session, so ``mapo/*`` metrics count sessions) and gives every output of the session that value, times its
response mask; a session whose agent loop returned nothing has no key and takes no part. Any other estimator, and
batches of one output per session, go to verl's function unchanged.
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from typing import Any

from mapo_verl.post_import import call_after_import, replace_function
from mapo_verl.registry_probe import ESTIMATOR_NAME

logger = logging.getLogger(__name__)

VERL_MODULE = "verl.trainer.ppo.v1.utils"
VERL_FUNCTION = "compute_advantage_for_multi_trajectories"
_MARK = "_mapo_sessions"


def final_outputs(batch_keys: Sequence[str]) -> tuple[list[int], list[int]]:
    """For keys ``{uid}_{session_id}_{index}``: the row of each session's final output (highest ``index``), in
    order of first appearance, and for every row the position of its session's final output in that list."""
    final: dict[str, tuple[int, int]] = {}
    session_of_row = []
    for row, key in enumerate(batch_keys):
        parts = str(key).rsplit("_", 2)
        if len(parts) != 3 or not parts[2].lstrip("-").isdigit():
            raise ValueError(f"trajectory key {key!r} (row {row}) is not verl's {{uid}}_{{session_id}}_{{index}}")
        session, index = f"{parts[0]}_{parts[1]}", int(parts[2])
        session_of_row.append(session)
        if session not in final or final[session][0] < index:
            final[session] = (index, row)
    position = {session: k for k, session in enumerate(final)}
    return [row for _, row in final.values()], [position[s] for s in session_of_row]


def by_session(original: Callable[..., Any]) -> Callable[..., Any]:
    """verl's ``compute_advantage_for_multi_trajectories`` with ``mapo`` computed on each session's final output."""
    if getattr(original, _MARK, False):
        return original

    signature = inspect.signature(original)

    @functools.wraps(original)
    def compute_advantage_for_multi_trajectories(*args: Any, **kwargs: Any) -> Any:
        call = signature.bind(*args, **kwargs)
        call.apply_defaults()
        data, batch_keys, estimator = (call.arguments[k] for k in ("data", "batch_keys", "adv_estimator"))
        if str(getattr(estimator, "value", estimator)) != ESTIMATOR_NAME:
            return original(*args, **kwargs)
        config = call.arguments.get("config")
        key = _lay_success_field(data, batch_keys, config)
        finals, session_of_row = final_outputs(batch_keys)
        if len(finals) == len(batch_keys):  # one output per session: the plain path is the same computation
            return original(*args, **kwargs)
        import torch

        from mapo_verl import success_field
        from mapo_verl.verl_plugin import advantage_from_verl_batch

        rows = torch.tensor(finals, dtype=torch.long)
        rewards = data.batch["token_level_rewards"]
        mask = data.batch["response_mask"]
        uid = data.non_tensor_batch["uid"][finals]
        successes = None if key is None else success_field.from_batch(data, key).index_select(0, rows)
        result = advantage_from_verl_batch(
            rewards.index_select(0, rows), mask.index_select(0, rows), uid, config, successes
        )
        per_row = result.advantage.index_select(0, torch.tensor(session_of_row, dtype=torch.long))
        advantages = (per_row.unsqueeze(-1) * mask).to(rewards.dtype)
        data.batch["advantages"] = advantages
        data.batch["returns"] = advantages
        return data

    setattr(compute_advantage_for_multi_trajectories, _MARK, True)
    return compute_advantage_for_multi_trajectories


def _lay_success_field(data: Any, batch_keys: Sequence[str], config: Any) -> str | None:
    """With ``algorithm.mapo.success_key`` in the V1 trainer: the trajectories' reward field, fetched from
    TransferQueue for this batch (:mod:`mapo_verl.success_field`), laid in ``data.non_tensor_batch`` in row order;
    the key (None when unset)."""
    import numpy as np

    from mapo_verl import success_field
    from mapo_verl.verl_plugin import settings_from_config

    key = settings_from_config(config).success_key
    fields = success_field.reward_fields(batch_keys) if key is not None else None
    if fields is not None:
        missing = [row for row, info in enumerate(fields) if key not in info]
        if missing:
            present = sorted({name for info in fields for name in info})
            raise success_field.missing_key_error(
                key, present, f"the reward_extra_info of trajectories {[batch_keys[r] for r in missing[:3]]}"
            )
        data.non_tensor_batch[key] = np.array([info[key] for info in fields], dtype=object)
    return key


def _wrap(module: Any) -> None:
    if not replace_function(module, VERL_FUNCTION, by_session):
        logger.warning("mapo: %s has no %s; multi-output sessions count every output", VERL_MODULE, VERL_FUNCTION)


def install() -> None:
    """Put :func:`by_session` in front of verl's function (now, or when verl imports it)."""
    call_after_import(VERL_MODULE, _wrap)
