"""A Qwen2.5-VL processor for images only, loadable on CPU torch without torchvision.

This file is copied into the tiny model's folder and named by ``processor_config.json``'s ``auto_map``, so
``AutoProcessor.from_pretrained(path, trust_remote_code=True)`` (what verl calls) builds it. transformers'
own ``Qwen2_5_VLProcessor`` insists on a video processor, whose class needs torchvision; this subclass keeps
only the image processor and the tokenizer. It keeps the class name ``Qwen2_5_VLProcessor`` on purpose: verl
dispatches on that name to bind Qwen2.5-VL's ``get_rope_index`` (3-D M-RoPE position ids).
"""

from transformers.models.qwen2_5_vl import processing_qwen2_5_vl


class Qwen2_5_VLProcessor(processing_qwen2_5_vl.Qwen2_5_VLProcessor):
    """transformers' Qwen2.5-VL processor with attributes ``image_processor`` and ``tokenizer`` only (no video)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor=image_processor, tokenizer=tokenizer, chat_template=chat_template, **kwargs)
