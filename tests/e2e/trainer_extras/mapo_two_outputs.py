"""A verl agent loop for the e2e tests that returns several outputs per session, as a loop that manages its context
does: sessions with an even ``session_id`` return an intermediate output (a copy of the response) before the final
one; odd sessions return one. Registered through ``actor_rollout_ref.rollout.agent.agent_loop_config_path`` (a YAML
list naming this class) with this folder on ``PYTHONPATH``."""

from __future__ import annotations

from typing import Any

from verl.experimental.agent_loop.single_turn_agent_loop import SingleTurnAgentLoop


class TwoOutputAgentLoop(SingleTurnAgentLoop):
    async def run(self, sampling_params: dict[str, Any], priority: int = 0, **kwargs: Any):
        final = await super().run(sampling_params, priority=priority, **kwargs)
        if int(kwargs.get("session_id", 1)) % 2:
            return final
        return [final.model_copy(deep=True), final]
