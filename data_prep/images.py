"""Images: raw bytes from any form a source stores them in, normalised for Qwen2.5-VL (size, mode)."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

from PIL import Image

from data_prep.rows import BadRecord

#: The paper's image budget (Qwen2.5-VL ``max_pixels``): larger images are downscaled keeping aspect ratio.
DEFAULT_MAX_PIXELS = 4194304
#: Qwen2-VL's processors reject images whose long side exceeds 200x the short side.
MAX_ASPECT_RATIO = 200
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})


def image_list(value: Any) -> list[Any]:
    """A column value as a list of images: ``None``/empty -> ``[]``, a list/tuple/array as is, else ``[value]``."""
    if value is None or (isinstance(value, str | bytes) and not value):
        return []
    if isinstance(value, list | tuple):
        return [v for v in value if v is not None]
    if hasattr(value, "tolist") and not isinstance(value, bytes | bytearray | memoryview | Image.Image):
        return [v for v in value.tolist() if v is not None]
    return [value]


def _image_bytes(source: Any, base_dir: Path | None) -> bytes:
    """Raw bytes from ``bytes``, a ``{"bytes", "path"}`` dict, a path, or a PIL image."""
    if isinstance(source, Image.Image):
        buffer = io.BytesIO()
        source.save(buffer, format="PNG")
        return buffer.getvalue()
    if isinstance(source, dict):
        if source.get("bytes"):
            return bytes(source["bytes"])
        source = source.get("path")
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if isinstance(source, str | os.PathLike) and str(source):
        path = Path(source)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        try:
            return path.read_bytes()
        except OSError as exc:
            raise BadRecord("missing image", f"{path}: {exc.strerror or exc}") from None
    raise BadRecord("missing image", "no image data")


def normalize_image(source: Any, max_pixels: int = DEFAULT_MAX_PIXELS, base_dir: Path | None = None) -> dict:
    """``{"bytes": ...}`` for one image.

    The original bytes are kept unless the image has more than ``max_pixels`` pixels (then it is downscaled
    keeping its aspect ratio) or a mode other than RGB/L (palette, CMYK, alpha, 16-bit...: converted to RGB,
    alpha composited on white). Re-encoded images are JPEG (quality 95) if the source was JPEG, else PNG.
    Unreadable data raises :class:`BadRecord`.
    """
    raw = _image_bytes(source, base_dir)
    if not raw:
        raise BadRecord("missing image", "empty image file")
    try:
        image = Image.open(io.BytesIO(raw))
        image.load()
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, DecompressionBombError...
        raise BadRecord("corrupt image", f"{type(exc).__name__}: {exc}") from None
    width, height = image.size
    if width < 1 or height < 1:
        raise BadRecord("corrupt image", f"size {width}x{height}")
    if max(width, height) / min(width, height) > MAX_ASPECT_RATIO:
        raise BadRecord("extreme aspect ratio", f"{width}x{height}")
    fmt = image.format
    needs_rgb = image.mode not in ("RGB", "L")
    needs_resize = width * height > max_pixels
    if not needs_rgb and not needs_resize:
        return {"bytes": raw}
    if needs_rgb:
        image = _to_rgb(image)
    if needs_resize:
        scale = math.sqrt(max_pixels / (width * height))
        size = (max(1, math.floor(width * scale)), max(1, math.floor(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    if fmt in ("JPEG", "MPO"):
        image.save(buffer, format="JPEG", quality=95)
    else:
        image.save(buffer, format="PNG")
    return {"bytes": buffer.getvalue()}


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
