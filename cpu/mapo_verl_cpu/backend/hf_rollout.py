"""Rollout backend ``hf`` for verl: generation with plain transformers in a Ray actor (CPU, or a debugging GPU).

Selected with ``actor_rollout_ref.rollout.name=hf``. Three parts, shaped like verl's vLLM backend:

* :class:`HFRolloutServer`, a Ray actor holding a copy of the policy. ``generate`` runs in a worker thread (the
  actor's event loop stays free for the control calls) and returns the response token ids and their
  log-probabilities; requests for the same prompt, images and sampling parameters that are waiting together (a
  group's n samples) are generated as one batch (``num_return_sequences``). It receives the trainer's weights
  each step through ``load_weights``;
* :class:`HFReplica`, the ``RolloutReplica`` that starts that actor (registered in ``RolloutReplicaRegistry``);
* :class:`HFServerAdapter`, the ``BaseRollout`` verl builds inside each actor worker (``_ROLLOUT_REGISTRY``): it
  gathers the actor's full weights after every update and the first rank ships them to the server.

Images (Qwen2.5-VL): the agent loop sends ``prompt_ids`` whose ``<|image_pad|>`` runs are already expanded, plus
the images and ``mm_processor_kwargs``. Each run is collapsed to one pad, the images go through the processor, and
each pad is expanded again to ``t*h*w / merge^2`` tokens (the same count the actor sees). ``mm_token_type_ids`` goes
to ``generate`` so that positions are the 3-D M-RoPE ids the actor uses: without it transformers silently falls
back to 1-D positions and the rollout's log-probs drift from the actor's once the model has learned anything.

Sampling never picks the padded vocabulary tail (ids >= len(tokenizer)) nor the vision placeholders, as verl
masks them for vLLM; the returned log-probs are those of the same masked, temperature-scaled distribution:
log pi(y_t) = log softmax(mask(z_t) / T)[y_t]   (T = 1 when greedy).

Sampling is reproducible: every sample draws its tokens by the Gumbel-max rule,
y_t = argmax_v (mask(z_t)_v / T + g_v),  g_v = -log(-log U_v),  U_v ~ Uniform(0, 1),
an exact draw from softmax(mask(z_t) / T), with U from its own generator seeded by
(``rollout.seed``, replica, weights version, the request's key, the sample's index among that key's requests since
the weights changed) (:func:`sample_seed`). The same seed and weights give the same samples of each prompt whatever
order the requests arrive in and however they are batched.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import ray
import torch
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
from torch.distributed.tensor import DTensor
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForImageTextToText,
    LogitsProcessor,
    LogitsProcessorList,
)
from verl.utils.config import omega_conf_to_dataclass
from verl.workers.config import HFModelConfig, RolloutConfig
from verl.workers.rollout.base import BaseRollout
from verl.workers.rollout.replica import RolloutReplica, TokenOutput
from verl.workers.rollout.utils import get_vision_placeholder_token_ids

from mapo_verl_cpu.backend import ROLLOUT_NAME

logger = logging.getLogger(__name__)

WEIGHT_BUCKET_BYTES = 64 << 20


def server_actor_name(replica_rank: int, node_rank: int = 0) -> str:
    """The Ray actor name of a replica's server (the adapter finds it by name)."""
    return f"{ROLLOUT_NAME}_server_{replica_rank}_{node_rank}"


# ------------------------------------------------------------------------------------------- prompt ids
def collapse_pad_runs(prompt_ids: list[int], pad_ids: set[int]) -> list[int]:
    """Each run of consecutive pad ids (image or video placeholders) becomes one pad."""
    out: list[int] = []
    for tok in prompt_ids:
        if tok in pad_ids and out and out[-1] == tok:
            continue
        out.append(tok)
    return out


def expand_pads(prompt_ids: list[int], pad_id: int, counts: list[int]) -> list[int]:
    """The k-th ``pad_id`` becomes ``counts[k]`` pads; the number of pads must equal ``len(counts)``."""
    n_pads = sum(1 for tok in prompt_ids if tok == pad_id)
    if n_pads != len(counts):
        raise ValueError(f"prompt has {n_pads} image placeholders but {len(counts)} images were sent")
    out: list[int] = []
    k = 0
    for tok in prompt_ids:
        if tok == pad_id:
            out.extend([pad_id] * counts[k])
            k += 1
        else:
            out.append(tok)
    return out


# ------------------------------------------------------------------------------------------------ sampling
def sample_seed(seed: int, replica_rank: int, weights_version: int, key: str, index: int) -> int:
    """The generator seed of one sample: a 63-bit hash of what identifies it, independent of arrival order."""
    text = f"{seed}:{replica_rank}:{weights_version}:{key}:{index}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


def keep_top_k_top_p(scores: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """``scores`` (rows, vocab) with tokens outside the top k (``top_k`` > 0) and outside the smallest set whose
    probability reaches ``top_p`` (< 1; the most likely token always kept) set to -inf."""
    if top_k > 0 and top_k < scores.shape[-1]:
        kth = torch.topk(scores, top_k, dim=-1).values[..., -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        ordered, order = torch.sort(scores, dim=-1, descending=True)
        before = torch.cumsum(torch.softmax(ordered, dim=-1), dim=-1) - torch.softmax(ordered, dim=-1)
        drop = torch.zeros_like(scores, dtype=torch.bool).scatter(-1, order, before >= top_p)
        scores = scores.masked_fill(drop, float("-inf"))
    return scores


class GumbelSampler(LogitsProcessor):
    """Draws each row's next token itself: the argmax of the masked, temperature-scaled, top-k/top-p filtered
    scores plus Gumbel noise from the row's own generator; returns 0 for the drawn token and -inf elsewhere, so
    that transformers' own sampling step can only pick it."""

    def __init__(self, mask, temperature: float, top_k: int, top_p: float, seeds: list[int]) -> None:
        self.mask, self.temperature, self.top_k, self.top_p = mask, temperature, top_k, top_p
        self.generators = [torch.Generator().manual_seed(s) for s in seeds]

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        scaled = keep_top_k_top_p(self.mask(scores) / self.temperature, self.top_k, self.top_p)
        uniform = torch.stack(
            [torch.rand(scores.shape[-1], generator=g, dtype=torch.float64) for g in self.generators]
        ).clamp_(min=1e-300)
        drawn = torch.argmax(scaled.double() - torch.log(-torch.log(uniform)), dim=-1, keepdim=True)
        return torch.full_like(scores, float("-inf")).scatter_(-1, drawn, 0.0)


# ------------------------------------------------------------------------------------------------ server
def request_key(prompt_ids: list[int], sampling_params: dict, image_data: list[Any] | None, mm_kwargs: dict) -> str:
    """Requests with equal keys are samples of one distribution and may be generated as one batch."""
    digest = hashlib.sha256(json.dumps([prompt_ids, sampling_params, mm_kwargs], sort_keys=True, default=str).encode())
    for image in image_data or []:
        tobytes = getattr(image, "tobytes", None)
        digest.update(repr((getattr(image, "mode", None), getattr(image, "size", None))).encode())
        digest.update(tobytes() if tobytes is not None else repr(image).encode())
    return digest.hexdigest()


class HFRolloutServer:
    """Token-in, token-out generation with transformers, off the event loop; a group's waiting samples batched."""

    #: most samples generated in one batch
    MAX_BATCH = 64

    def __init__(self, config: Any, model_config: Any, replica_rank: int = 0) -> None:
        self.config = omega_conf_to_dataclass(config, dataclass_type=RolloutConfig)
        self.model_config = omega_conf_to_dataclass(model_config, dataclass_type=HFModelConfig)
        self.replica_rank = replica_rank
        if not torch.cuda.is_available():
            torch.set_num_threads(1)  # small CPU models: contending threads are far slower than one
        self.seed = int(getattr(self.config, "seed", 0) or 0)
        self.weights_version = 0  # load_weights calls so far: the sample seeds' "which policy"
        self._drawn: dict[str, int] = {}  # request key -> samples drawn under this weights version
        self.tokenizer = self.model_config.tokenizer
        self.processor = self.model_config.processor
        path = self.model_config.local_path
        hf_config = AutoConfig.from_pretrained(path, trust_remote_code=self.model_config.trust_remote_code)
        self.model = self._load_model(path, hf_config).eval()
        self.global_steps: int | None = None
        self._lock = threading.Lock()
        self._waiting: list[tuple[str, tuple, asyncio.Future]] = []
        self._draining: asyncio.Task | None = None
        self._banned = self._banned_token_ids()
        self._vocab_size = len(self.tokenizer)

    def _load_model(self, path: str, hf_config: Any) -> torch.nn.Module:
        kwargs = {"dtype": torch.float32, "trust_remote_code": self.model_config.trust_remote_code}
        try:
            return AutoModelForImageTextToText.from_pretrained(path, **kwargs)
        except ValueError:  # a text-only architecture
            return AutoModelForCausalLM.from_pretrained(path, **kwargs)

    def _banned_token_ids(self) -> list[int]:
        return get_vision_placeholder_token_ids(self.processor) if self.processor is not None else []

    # ---------------------------------------------------------------------------------------- generate
    async def generate(
        self,
        prompt_ids: list[int],
        sampling_params: dict[str, Any],
        request_id: str,
        image_data: list[Any] | None = None,
        video_data: list[Any] | None = None,
        mm_processor_kwargs: dict[str, Any] | None = None,
        **_: Any,
    ):
        if video_data:
            raise NotImplementedError("the hf rollout backend does not support video inputs")
        request = (list(prompt_ids), dict(sampling_params), image_data, mm_processor_kwargs or {})
        future = asyncio.get_running_loop().create_future()
        self._waiting.append((request_key(*request), request, future))
        if self._draining is None or self._draining.done():
            self._draining = asyncio.create_task(self._drain())
        token_ids, log_probs = await future
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs,
            stop_reason="completed",
            extra_fields={"global_steps": self.global_steps},
        )

    async def _drain(self) -> None:
        """Serve the waiting requests, the first one's equals (up to MAX_BATCH) together, until none is left."""
        await asyncio.sleep(0)  # let the rest of a group's concurrent requests arrive
        while self._waiting:
            key = self._waiting[0][0]
            batch, rest = [], []
            for waiting in self._waiting:
                (batch if waiting[0] == key and len(batch) < self.MAX_BATCH else rest).append(waiting)
            self._waiting = rest
            try:
                results = await asyncio.to_thread(self._generate_locked, *batch[0][1], len(batch))
            except Exception as err:  # every waiting caller of this batch gets the error
                for _, _, future in batch:
                    if not future.done():
                        future.set_exception(err)
                continue
            for (_, _, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _generate_locked(self, prompt_ids, sampling_params, image_data, mm_kwargs, count: int = 1):
        with self._lock, torch.no_grad():
            return self._generate_many(prompt_ids, sampling_params, image_data, mm_kwargs, count)

    def sample_seeds(self, key: str, count: int) -> list[int]:
        """The seeds of the next ``count`` samples of requests with ``key`` under the current weights."""
        first = self._drawn.get(key, 0)
        self._drawn[key] = first + count
        return [sample_seed(self.seed, self.replica_rank, self.weights_version, key, first + i) for i in range(count)]

    def build_inputs(self, prompt_ids: list[int], image_data: list[Any] | None, mm_kwargs: dict) -> dict[str, Any]:
        """Model inputs for one prompt: ids with pad runs re-expanded, pixel values, grid, token types."""
        inputs: dict[str, Any] = {}
        if image_data:
            if self.processor is None:
                raise ValueError("images were sent but the model has no processor")
            pad_id = self.processor.image_token_id
            ids = collapse_pad_runs(prompt_ids, {pad_id, getattr(self.processor, "video_token_id", pad_id)})
            image_inputs = self.processor.image_processor(images=image_data, return_tensors="pt", **mm_kwargs)
            merge = self.processor.image_processor.merge_size
            counts = [int(thw.prod()) // merge**2 for thw in image_inputs["image_grid_thw"]]
            prompt_ids = expand_pads(ids, pad_id, counts)
            inputs.update(image_inputs)
        input_ids = torch.tensor([prompt_ids], dtype=torch.long)
        inputs["input_ids"] = input_ids
        inputs["attention_mask"] = torch.ones_like(input_ids)
        if self.processor is not None and hasattr(self.processor, "create_mm_token_type_ids"):
            inputs["mm_token_type_ids"] = torch.tensor(self.processor.create_mm_token_type_ids([prompt_ids]))
        return inputs

    def mask_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits with the padded-vocabulary tail and the vision placeholders set to -inf."""
        logits = logits.clone()
        logits[..., self._vocab_size :] = float("-inf")
        if self._banned:
            logits[..., self._banned] = float("-inf")
        return logits

    def _max_new_tokens(self, n_prompt: int, sampling_params: dict) -> int:
        limit = sampling_params.pop("max_tokens", None) or sampling_params.pop("max_new_tokens", None)
        budget = self.config.prompt_length + self.config.response_length - n_prompt
        if limit is None:
            limit = min(self.config.response_length, budget)
        return max(1, min(int(limit), self.config.max_model_len - n_prompt if self.config.max_model_len else limit))

    def _generate_many(
        self, prompt_ids, sampling_params, image_data, mm_kwargs, count: int
    ) -> list[tuple[list[int], list[float]]]:
        """``count`` independent samples of one prompt in one ``generate`` call (``num_return_sequences``): each the
        response token ids (ending with the stop token when one was produced) and their log-probs."""
        sampling_params = dict(sampling_params)
        inputs = self.build_inputs(prompt_ids, image_data, mm_kwargs)
        n_prompt = inputs["input_ids"].shape[1]
        temperature = float(sampling_params.get("temperature", 1.0) or 0.0)
        do_sample = temperature > 0
        top_k = int(sampling_params.get("top_k", -1) or -1)
        top_p = float(sampling_params.get("top_p", 1.0) or 1.0)
        server = self

        class _Mask(LogitsProcessor):
            def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
                return server.mask_logits(scores)

        if do_sample:
            key = request_key(prompt_ids, sampling_params, image_data, mm_kwargs)
            seeds = self.sample_seeds(key, count)
            processor: LogitsProcessor = GumbelSampler(self.mask_logits, temperature, top_k, top_p, seeds)
        else:
            processor = _Mask()
        eos = self.model.generation_config.eos_token_id
        eos_ids = [eos] if isinstance(eos, int) else list(eos or [self.tokenizer.eos_token_id])
        out = self.model.generate(
            **inputs,
            max_new_tokens=self._max_new_tokens(n_prompt, sampling_params),
            do_sample=do_sample,  # sampling: GumbelSampler leaves one token to pick
            num_return_sequences=count,
            temperature=1.0 if do_sample else None,
            top_k=None,
            top_p=None,
            repetition_penalty=float(sampling_params.get("repetition_penalty", 1.0) or 1.0),
            logits_processor=LogitsProcessorList([processor]),
            eos_token_id=eos_ids,
            pad_token_id=self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else eos_ids[0],
            return_dict_in_generate=True,
            output_logits=True,
        )
        raw = torch.stack(list(out.logits), dim=1).float()  # (count, steps, vocab)
        scaled = self.mask_logits(raw) / (temperature if do_sample else 1.0)
        responses = out.sequences[:, n_prompt : n_prompt + raw.shape[1]]
        log_probs = torch.log_softmax(scaled, dim=-1).gather(-1, responses[..., None]).squeeze(-1)
        samples = []
        for row, row_log_probs in zip(responses.tolist(), log_probs.tolist(), strict=True):
            # a finished row is padded after its stop token (the pad id may itself be a stop id): cut after the first
            stop = next((i for i, token in enumerate(row) if token in eos_ids), len(row) - 1)
            samples.append((row[: stop + 1], row_log_probs[: stop + 1]))
        return samples

    # ----------------------------------------------------------------------------------------- weights
    def load_weights(self, named_tensors: list[tuple[str, torch.Tensor]], global_steps: int | None = None) -> int:
        """Copy the trainer's tensors into the model by name (HF keys); unknown names are an error."""
        params = dict(self.model.named_parameters())
        params.update(dict(self.model.named_buffers()))
        unknown = [name for name, _ in named_tensors if name not in params]
        if unknown:
            raise KeyError(
                f"hf rollout: {len(unknown)} weight name(s) unknown to the server's model, e.g. {unknown[:3]}"
            )
        with self._lock, torch.no_grad():
            for name, tensor in named_tensors:
                params[name].copy_(tensor.to(params[name].dtype))
            self.weights_version += 1
            self._drawn.clear()
        if global_steps is not None:
            self.global_steps = global_steps
        return len(named_tensors)

    def set_global_steps(self, global_steps: int | None) -> None:
        self.global_steps = global_steps

    # ----------------------------------------------------------------------- control (no-ops on CPU)
    async def wake_up(self) -> None:
        return None

    async def sleep(self) -> None:
        return None

    async def abort_all_requests(self, reject_request: bool = False) -> dict[str, Any]:
        return {"aborted_count": 0, "request_ids": []}

    async def resume_generation(self) -> None:
        return None

    async def clear_kv_cache(self) -> None:
        return None

    async def release_kv_cache(self) -> None:
        return None

    async def resume_kv_cache(self) -> None:
        return None

    async def start_profile(self, **_: Any) -> None:
        return None

    async def stop_profile(self) -> None:
        return None


# ----------------------------------------------------------------------------------------------- replica
class HFReplica(RolloutReplica):
    """One :class:`HFRolloutServer` per replica, on the node of the replica's first worker."""

    async def launch_servers(self) -> None:
        node_id = None
        if self.workers:
            node_id = await self.workers[0].__ray_call__.remote(lambda _self: ray.get_runtime_context().get_node_id())
        name = server_actor_name(self.replica_rank) + self.name_suffix
        options: dict[str, Any] = {"name": name, "max_concurrency": self.max_concurrency, "num_cpus": 0}
        if node_id is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)
        server = (
            ray.remote(HFRolloutServer)
            .options(**options)
            .remote(config=self.config, model_config=self.model_config, replica_rank=self.replica_rank)
        )
        await server.wake_up.remote()  # raises here if the server failed to load the model
        self.servers = [server]
        self._server_handle = server
        self._server_address = f"{ROLLOUT_NAME}://{name}"


def load_replica_class() -> type[RolloutReplica]:
    """The loader ``RolloutReplicaRegistry`` calls for ``hf``."""
    return HFReplica


# ------------------------------------------------------------------------------------------------ adapter
def _full_tensors(weights: Iterable[tuple[str, torch.Tensor]]) -> Iterator[tuple[str, torch.Tensor]]:
    """Every ``(name, tensor)`` as a full CPU tensor; ``DTensor`` shards are gathered (collective: all ranks)."""
    for name, tensor in weights:
        if isinstance(tensor, DTensor):
            tensor = tensor.full_tensor()
        yield name, tensor.detach().to("cpu", copy=True)


class HFServerAdapter(BaseRollout):
    """Inside each actor worker: ships the trainer's weights to the replica's :class:`HFRolloutServer`."""

    def __init__(self, config: Any, model_config: Any, device_mesh: Any, replica_rank: int = -1, **kwargs: Any):
        super().__init__(config, model_config, device_mesh)
        rank = int(os.environ.get("RANK", "0"))
        world = (
            self.config.tensor_model_parallel_size
            * self.config.data_parallel_size
            * self.config.pipeline_model_parallel_size
        )
        self.replica_rank = rank // world if replica_rank == -1 else replica_rank
        self.is_leader = rank % world == 0
        self.sleep_level = 2  # verl sets 1 for LoRA adapters; weights are always sent in full here
        self._server = None

    def _server_handle(self):
        if self._server is None:
            self._server = ray.get_actor(server_actor_name(self.replica_rank))
        return self._server

    async def resume(self, tags: list[str]) -> None:
        return None

    async def release(self) -> None:
        return None

    async def update_weights(self, weights, wire_format: str = "named_tensors", **kwargs: Any) -> None:
        """Gather every tensor (all ranks take part), the leader sends them in buckets of about 64 MB."""
        if wire_format != "named_tensors":
            raise NotImplementedError(f"hf rollout: wire_format {wire_format!r} (only named_tensors)")
        global_steps = kwargs.get("global_steps")
        bucket: list[tuple[str, torch.Tensor]] = []
        size = 0
        pending = []
        for name, tensor in _full_tensors(weights):
            if not self.is_leader:
                continue
            bucket.append((name, tensor))
            size += tensor.numel() * tensor.element_size()
            if size >= WEIGHT_BUCKET_BYTES:
                pending.append(self._server_handle().load_weights.remote(bucket, global_steps))
                bucket, size = [], 0
        if self.is_leader:
            if bucket:
                pending.append(self._server_handle().load_weights.remote(bucket, global_steps))
            await asyncio.gather(*pending)
            await self._server_handle().set_global_steps.remote(global_steps)
