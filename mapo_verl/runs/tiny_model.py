"""A tiny Qwen2.5-VL built locally (no downloads): config, random weights, tokenizer, processor.

``build_tiny_model(out_dir)`` writes a folder that ``transformers`` and verl load like a hub checkpoint:

* ``config.json`` / ``model.safetensors``: a ``Qwen2_5_VLForConditionalGeneration`` of hidden size 64, 2 text
  layers and a 1-block vision tower (about 0.2 M parameters), randomly initialised from a fixed seed;
* ``tokenizer.json`` / ``tokenizer_config.json``: a byte-level BPE trained here with the ``tokenizers`` library on
  math-prompt text, carrying Qwen2.5-VL's special tokens (``<|im_start|>``, ``<|vision_start|>``,
  ``<|image_pad|>``, ...) and its chat template;
* ``preprocessor_config.json``: transformers' ``Qwen2VLImageProcessor`` settings (patch 14, merge 2);
* ``processor_config.json`` + ``processing_tiny_qwen2_5_vl.py``: an images-only ``Qwen2_5_VLProcessor`` (see
  that module) that loads without torchvision through ``auto_map``.

``warm_start(model_dir, examples)`` then trains the model briefly, supervised, on responses of the form
``<think> ... </think> \\boxed{X}`` (X right half the time), so that sampled responses earn rewards that vary within
a group: a random model writes no ``\\boxed{}``, scores 0 everywhere and gives all-zero advantages.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

#: Bump when the files written here change, so cached folders are rebuilt.
BUILD_VERSION = "6"
DEFAULT_CACHE_DIR = Path(os.environ.get("MAPO_VERL_CACHE", Path.home() / ".cache" / "mapo-verl"))

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen2.5-VL-Instruct's chat template (images and videos as vision_start/pad/end runs).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Text the BPE is trained on: the shape of Geometry3K prompts and of the responses the reward wants.
_CORPUS = [
    "You are a helpful assistant.",
    "First reason step by step inside <think> </think> tags, "
    "then give the final answer inside \\boxed{} after the closing </think> tag.",
    "Find x. Find y. Find the area of the figure. Find the perimeter. Find m \\angle ABC. Round to the nearest tenth.",
    "In \\odot X, A B = 30, C D = 30, and m \\widehat C Z = 40. Find m \\widehat A B.",
    "<think> The figure shows a triangle, so I use the angle sum and the given sides. </think> \\boxed{60}",
    "\\frac{1}{2} \\sqrt{3} 2\\sqrt{3} 0.5 1.5 12.5 3.14 \\pi degrees units square",
    " ".join(str(n) for n in range(200)),
    "triangle circle square rectangle parallelogram trapezoid rhombus polygon radius diameter chord tangent",
    "angle side length height base area perimeter segment line point measure equal parallel perpendicular",
]


@dataclass(frozen=True)
class TinyModelSpec:
    """The sizes of the tiny model (all that the cache key depends on, with the warm-start data)."""

    bpe_vocab_size: int = 600
    hidden_size: int = 64
    num_layers: int = 2
    # head_dim = hidden_size / num_heads = 32: vLLM's CPU attention takes head sizes 32, 64, 80, ... only
    # (vllm/v1/attention/backends/cpu_attn.py), so the same model serves the hf and the vllm rollouts
    num_heads: int = 2
    num_kv_heads: int = 1
    intermediate_size: int = 128
    vision_hidden_size: int = 32
    vision_depth: int = 1
    vision_heads: int = 2
    min_pixels: int = 3136  # 56 x 56: 4 image tokens at least
    max_pixels: int = 12544  # 112 x 112: 16 image tokens at most
    #: std of the random initial weights. Each random linear layer scales a signal by about
    #: initializer_range * sqrt(hidden_size): 0.16 at 0.02 and hidden 64, so the picture barely reaches the answer's
    #: logits at initialisation; 0.1 keeps it (the ``shapes`` task of ``compare``, docs/learning.md).
    initializer_range: float = 0.02
    seed: int = 0


@dataclass(frozen=True)
class WarmStartExample:
    """One prompt of the warm start: the user text (with ``<image>`` markers), its images and the answer."""

    question: str
    answer: str
    images: tuple[bytes, ...] = ()


def _train_tokenizer(spec: TinyModelSpec):
    """A byte-level BPE whose first ids are Qwen2.5-VL's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.bpe_vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer=trainer)
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def _save_tokenizer(tokenizer, out: Path) -> object:
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        bos_token=None,
        model_max_length=32768,
        chat_template=CHAT_TEMPLATE,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    fast.save_pretrained(str(out))
    return fast


def _config(spec: TinyModelSpec, tokenizer) -> object:
    from transformers import Qwen2_5_VLConfig

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    vocab = -(-len(tokenizer) // 64) * 64  # padded like real checkpoints: the tail ids are never sampled
    head_dim = spec.hidden_size // spec.num_heads
    half = head_dim // 2
    mrope = [half - 2 * (half // 3), half // 3, half // 3]
    return Qwen2_5_VLConfig(
        text_config={
            "vocab_size": vocab,
            "hidden_size": spec.hidden_size,
            "intermediate_size": spec.intermediate_size,
            "num_hidden_layers": spec.num_layers,
            "num_attention_heads": spec.num_heads,
            "num_key_value_heads": spec.num_kv_heads,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": mrope},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
            "initializer_range": spec.initializer_range,
        },
        vision_config={
            "depth": spec.vision_depth,
            "hidden_size": spec.vision_hidden_size,
            "intermediate_size": 2 * spec.vision_hidden_size,
            "num_heads": spec.vision_heads,
            "out_hidden_size": spec.hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 112,
            "fullatt_block_indexes": [0],
            "initializer_range": spec.initializer_range,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
        initializer_range=spec.initializer_range,
    )


def _write_processor(spec: TinyModelSpec, out: Path) -> None:
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=spec.min_pixels, max_pixels=spec.max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    image_processor.save_pretrained(str(out))
    cfg_path = out / "preprocessor_config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["image_processor_type"] = "Qwen2VLImageProcessor"  # what real checkpoints name; PIL backend without torchvision
    cfg["processor_class"] = "Qwen2_5_VLProcessor"
    cfg_path.write_text(json.dumps(cfg, indent=2))
    shutil.copyfile(Path(__file__).with_name("processing_tiny_qwen2_5_vl.py"), out / "processing_tiny_qwen2_5_vl.py")
    (out / "processor_config.json").write_text(
        json.dumps(
            {
                "processor_class": "Qwen2_5_VLProcessor",
                "auto_map": {"AutoProcessor": "processing_tiny_qwen2_5_vl.Qwen2_5_VLProcessor"},
            },
            indent=2,
        )
    )
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)


def load_processor(model_dir: str | Path):
    """The folder's processor, as verl loads it (``AutoProcessor`` with ``trust_remote_code``)."""
    from transformers import AutoProcessor

    return AutoProcessor.from_pretrained(str(model_dir), trust_remote_code=True)


def write_tokenizer_and_processor(spec: TinyModelSpec, out: Path) -> object:
    """Write Qwen2.5-VL's tokenizer and images-only processor into ``out`` (created); returns the tokenizer.

    The folder then loads with ``AutoProcessor.from_pretrained(out, trust_remote_code=True)`` (:func:`load_processor`)
    and ``AutoTokenizer``, as verl loads them, on CPU torch without torchvision.
    """
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = _save_tokenizer(_train_tokenizer(spec), out)
    _write_processor(spec, out)
    return tokenizer


def write_model(spec: TinyModelSpec, out: Path) -> None:
    """Write the randomly initialised model, tokenizer and processor into ``out`` (created)."""
    import torch
    from transformers import GenerationConfig, Qwen2_5_VLForConditionalGeneration

    tokenizer = write_tokenizer_and_processor(spec, out)
    config = _config(spec, tokenizer)
    torch.manual_seed(spec.seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=[config.text_config.eos_token_id, config.text_config.pad_token_id],
        pad_token_id=config.text_config.pad_token_id,
        do_sample=True,
    )
    model.save_pretrained(str(out))


# ------------------------------------------------------------------------------------------- warm start
THOUGHT = "I use the figure."


def wrong_answer(answer: str) -> str:
    """A wrong answer that still belongs to its problem: ``1`` prepended (``80`` -> ``180``, ``0.5`` -> ``10.5``).

    A distractor drawn from other problems would teach the tiny model the answers' marginal instead of which answer
    goes with which prompt; with this one it learns the problem's answer and then hesitates over the prefix.
    """
    return "1" + answer


#: how the warm start writes each example's answer (``build_tiny_model(warm_style=...)``)
WARM_STYLES = ("mixed", "format")


def _response(answer: str, rng: random.Random, style: str = "mixed") -> str:
    """The warm start's target response for ``answer``.

    ``mixed`` (``make smoke``): ``<think> ... </think> \\boxed{X}``, X right half the time and
    :func:`wrong_answer` otherwise, a quarter of them without the think block, so that rewards vary within a group
    (0, 0.1, 0.9 or 1.0 under the project's math reward). ``format``: always the whole format with ``answer`` as
    given; with random answers this teaches the format and nothing about the picture (``compare``).
    """
    if style == "format":
        return f"<think> {THOUGHT} </think> \\boxed{{{answer}}}"
    value = answer if rng.random() < 0.5 else wrong_answer(answer)
    if rng.random() < 0.25:
        return f"\\boxed{{{value}}}"
    return f"<think> {THOUGHT} </think> \\boxed{{{value}}}"


def _encode_prompt(model, processor, example: WarmStartExample):
    """Prompt ids, token types, image grid and the vision tower's features for the image tokens (or None).

    The vision tower stays frozen during the warm start, so its features are computed once per prompt; spliced into
    the (trained) token embeddings, with the 3-D positions of ``get_rope_index``, they give the same logits as
    ``model(**processor(...))``.
    """
    import io

    import torch
    from PIL import Image

    images = [Image.open(io.BytesIO(b)).convert("RGB") for b in example.images]
    content: list[dict] = []
    for i, part in enumerate(example.question.split("<image>")):
        if i > 0:
            content.append({"type": "image"})
        if part:
            content.append({"type": "text", "text": part})
    text = processor.apply_chat_template([{"role": "user", "content": content}], add_generation_prompt=True)
    inputs = processor(text=[text], return_tensors="pt", **({"images": images} if images else {}))
    ids = inputs["input_ids"]
    types = inputs.get("mm_token_type_ids", torch.zeros_like(ids))
    grid = inputs.get("image_grid_thw")
    features = None
    if grid is not None:
        with torch.no_grad():
            features = model.model.get_image_features(inputs["pixel_values"], grid)
            features = getattr(features, "pooler_output", features)
            if isinstance(features, (list, tuple)):
                features = torch.cat(list(features))
    return ids, types, grid, features


def _embed(model, ids, features):
    """Token embeddings of ``ids`` with the image features in place of the image placeholder tokens."""
    embeds = model.get_input_embeddings()(ids)
    if features is None:
        return embeds
    mask = (ids == model.config.image_token_id)[..., None].expand_as(embeds)
    return embeds.masked_scatter(mask, features.to(embeds.dtype))


def warm_start(
    model_dir: Path,
    examples: Sequence[WarmStartExample],
    steps: int = 1000,
    lr: float = 3e-3,
    seed: int = 0,
    style: str = "mixed",
) -> list[float]:
    """Supervised warm start on ``<think> ... </think> \\boxed{X}`` (X per ``style``, see :func:`_response`).

    Each step takes one example, renders its chat prompt with the processor (images included: the vision tower
    and the 3-D positions run as in training) and minimises the cross entropy of the response tokens:
    L = -(1/|R|) sum_{t in R} log pi(y_t | y_<t, prompt). Saves the weights in place; returns the losses.
    """
    import torch

    if not examples:
        raise ValueError("warm_start needs at least one example")
    if style not in WARM_STYLES:
        raise ValueError(f"warm-start style {style!r} is not one of {', '.join(WARM_STYLES)}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: one thread is ~10x faster than two contending ones
    try:
        return _warm_start(model_dir, examples, steps, lr, seed, style)
    finally:
        torch.set_num_threads(threads)


def _warm_start(
    model_dir: Path, examples: Sequence[WarmStartExample], steps: int, lr: float, seed: int, style: str
) -> list[float]:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    processor = load_processor(model_dir)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(str(model_dir), dtype=torch.float32)
    model.train()
    rng = random.Random(seed)
    torch.manual_seed(seed)
    tokenizer = processor.tokenizer
    prompts = [_encode_prompt(model, processor, ex) for ex in examples]
    params = [p for name, p in model.named_parameters() if not name.startswith("model.visual.")]
    optimizer = torch.optim.AdamW(params, lr=lr)
    # linear decay to 0: with one sequence per step, a constant rate leaves the last few samples' imprint
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: 1.0 - i / steps)
    losses = []
    for _ in range(steps):
        k = rng.randrange(len(examples))
        prompt_ids, mm_types, grid, features = prompts[k]
        response = _response(examples[k].answer, rng, style) + tokenizer.eos_token
        response_ids = torch.tensor([tokenizer(response, add_special_tokens=False)["input_ids"]])
        input_ids = torch.cat([prompt_ids, response_ids], dim=1)
        types = torch.cat([mm_types, torch.zeros_like(response_ids, dtype=mm_types.dtype)], dim=1)
        attention_mask = torch.ones_like(input_ids)
        position_ids, _ = model.model.get_rope_index(input_ids, types, grid, attention_mask=attention_mask)
        embeds = _embed(model, input_ids, features)
        labels = input_ids.clone()
        labels[:, : prompt_ids.shape[1]] = -100
        loss = model(inputs_embeds=embeds, position_ids=position_ids, attention_mask=attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    model.eval()
    model.save_pretrained(str(model_dir))
    return losses


def cache_key(
    spec: TinyModelSpec, examples: Sequence[WarmStartExample], warm_steps: int, warm_style: str = "mixed"
) -> str:
    digest = hashlib.sha256(json.dumps([BUILD_VERSION, asdict(spec), warm_steps, warm_style]).encode())
    for ex in examples:
        digest.update(ex.question.encode() + b"\0" + ex.answer.encode() + b"\0")
        for image in ex.images:
            digest.update(hashlib.sha256(image).digest())
    return digest.hexdigest()[:16]


def build_tiny_model(
    out_dir: Path | None = None,
    examples: Sequence[WarmStartExample] = (),
    warm_steps: int = 1000,
    spec: TinyModelSpec = TinyModelSpec(),
    warm_style: str = "mixed",
) -> Path:
    """The tiny model's folder, built (and warm-started on ``examples`` if any) unless already cached.

    ``out_dir`` defaults to ``$MAPO_VERL_CACHE`` or ``~/.cache/mapo-verl``, under ``tiny-qwen2.5-vl-<key>``; the key
    hashes the spec, the warm-start data and this module's build version. Built in a temporary folder and renamed,
    so a crash never leaves a half-written model behind.
    """
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    root = Path(out_dir) if out_dir is not None else DEFAULT_CACHE_DIR
    key = cache_key(spec, examples, warm_steps if examples else 0, warm_style if examples else "mixed")
    target = root / f"tiny-qwen2.5-vl-{key}"
    if (target / ".complete").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_model(spec, tmp)
        if examples:
            losses = warm_start(tmp, examples, steps=warm_steps, seed=spec.seed, style=warm_style)
            summary = {"steps": warm_steps, "style": warm_style, "first_loss": losses[0], "last_loss": losses[-1]}
            (tmp / "warm_start.json").write_text(json.dumps(summary, indent=2))
        (tmp / ".complete").write_text("ok\n")
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished the same build first
            if not (target / ".complete").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target
