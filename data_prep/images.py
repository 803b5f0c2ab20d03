"""Images: raw bytes from any form a source stores them in, normalised for Qwen2.5-VL (size, mode)."""

from __future__ import annotations

import io
import math
import os
import stat
from pathlib import Path
from typing import Any

from PIL import Image

from data_prep.rows import BadRecord

#: The paper's image budget (Qwen2.5-VL ``max_pixels``): larger images are downscaled keeping aspect ratio.
DEFAULT_MAX_PIXELS = 4194304
#: Qwen2-VL's processors reject images whose long side exceeds 200x the short side.
MAX_ASPECT_RATIO = 200
#: The most pixels an image may have to be decoded at all (``--max-image-pixels``): PIL's own decompression-bomb
#: limit (twice ``PIL.Image.MAX_IMAGE_PIXELS``), above which an image is refused as oversize.
DEFAULT_MAX_IMAGE_PIXELS = 2 * (Image.MAX_IMAGE_PIXELS or 89478485)
OUTSIDE_FLAG = "--allow-outside-images"
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


def _image_bytes(source: Any, base_dir: Path | None, allow_outside: bool = False) -> bytes:
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
        return read_image_file(Path(source), base_dir, allow_outside)
    raise BadRecord("missing image", "no image data")


def confined_path(path: Path, base_dir: Path | None, allow_outside: bool = False) -> Path:
    """``path`` (relative paths against ``base_dir``), refused as :class:`BadRecord` if it leads outside ``base_dir``
    (an absolute path, ``..``, a link to elsewhere) unless ``allow_outside``; no ``base_dir``: not confined."""
    if base_dir is None:
        return path
    if allow_outside:
        return path if path.is_absolute() else base_dir / path
    if path.is_absolute():
        raise BadRecord("image outside the dataset", f"{path}: an absolute path (pass {OUTSIDE_FLAG} to follow it)")
    resolved = (base_dir / path).resolve()
    if not resolved.is_relative_to(base_dir.resolve()):
        raise BadRecord(
            "image outside the dataset",
            f"{path} leads to {resolved}, outside {base_dir} (pass {OUTSIDE_FLAG} to follow it)",
        )
    return base_dir / path


def read_image_file(path: Path, base_dir: Path | None, allow_outside: bool = False) -> bytes:
    """The bytes of an image file, confined to ``base_dir`` (:func:`confined_path`); anything but a regular file
    (a FIFO, a device, a folder) is a :class:`BadRecord`, refused without blocking on it."""
    path = confined_path(path, base_dir, allow_outside)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise BadRecord("missing image", f"{path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "rb") as handle:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a FIFO" if stat.S_ISFIFO(mode) else "a folder" if stat.S_ISDIR(mode) else "a special file"
            raise BadRecord("not a regular file", f"{path} is {kind}")
        try:
            return handle.read()
        except OSError as exc:
            raise BadRecord("missing image", f"{path}: {exc.strerror or exc}") from None


def normalize_image(
    source: Any,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    base_dir: Path | None = None,
    *,
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
    allow_outside: bool = False,
) -> dict:
    """``{"bytes": ...}`` for one image.

    The original bytes are kept unless the image has more than ``max_pixels`` pixels (then it is downscaled
    keeping its aspect ratio) or a mode other than RGB/L (palette, CMYK, alpha, 16-bit...: converted to RGB,
    alpha composited on white). Re-encoded images are JPEG (quality 95) if the source was JPEG, else PNG.
    Unreadable data, an image of more than ``max_image_pixels`` pixels (``oversize image``, not decoded) and a path
    outside ``base_dir`` (unless ``allow_outside``) raise :class:`BadRecord`.
    """
    raw = _image_bytes(source, base_dir, allow_outside)
    if not raw:
        raise BadRecord("missing image", "empty image file")
    bomb_limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below, checked on the header before decoding
    try:
        image = Image.open(io.BytesIO(raw))
        width, height = image.size
        if width * height > max_image_pixels:
            raise BadRecord(
                "oversize image",
                f"{width}x{height} = {width * height} pixels, above the limit of {max_image_pixels} "
                "(--max-image-pixels raises it)",
            )
        image.load()
    except BadRecord:
        raise
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError...
        raise BadRecord("corrupt image", f"{type(exc).__name__}: {exc}") from None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_limit
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


def image_options(args: Any) -> dict:
    """``normalize_image``'s keyword limits from a preparer's arguments."""
    return {
        "max_image_pixels": getattr(args, "max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS),
        "allow_outside": getattr(args, "allow_outside_images", False),
    }


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")
