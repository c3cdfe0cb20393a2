"""Colour filters and overlays: grayscale, brightness/contrast, sepia, text caption, frame counter.

Frames are uint8 ``[T, H, W, C]`` in and out (colour filters return 3 channels so the result
encodes with any codec). Text is drawn with Pillow's built-in default font, so nothing has to be
installed or downloaded; its size follows the frame height unless given. That font has ASCII
glyphs only: other text uses a given font file or a common system font that has every character,
and is refused (one line naming the characters) rather than drawn as boxes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from kinema.edit.ops import check_frames
from kinema.errors import KinemaError

# ITU-R BT.601 luma weights: what "grayscale" means for video since broadcast TV.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# The classic sepia matrix (rows give output R, G, B from input R, G, B).
_SEPIA = np.array([[0.393, 0.769, 0.189],
                   [0.349, 0.686, 0.168],
                   [0.272, 0.534, 0.131]], dtype=np.float32)


def _rgb(frames: np.ndarray) -> np.ndarray:
    return np.repeat(frames, 3, axis=-1) if frames.shape[-1] == 1 else frames


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def grayscale(frames: np.ndarray) -> np.ndarray:
    """Luma (BT.601) copied to three equal channels."""
    f = _rgb(check_frames(frames)).astype(np.float32)
    y = _to_uint8(f @ _LUMA)[..., None]
    return np.repeat(y, 3, axis=-1)


def brightness_contrast(frames: np.ndarray, brightness: float = 0.0, contrast: float = 1.0) -> np.ndarray:
    """``out = (in - 128) * contrast + 128 + brightness * 255``; brightness in [-1, 1], contrast >= 0."""
    check_frames(frames)
    if not -1 <= brightness <= 1:
        raise KinemaError(f"brightness must be in [-1, 1], got {brightness}")
    if not contrast >= 0:
        raise KinemaError(f"contrast must be >= 0, got {contrast}")
    f = frames.astype(np.float32)
    return _to_uint8((f - 128.0) * contrast + 128.0 + brightness * 255.0)


def sepia(frames: np.ndarray, amount: float = 1.0) -> np.ndarray:
    """Warm brown tone; ``amount`` in [0, 1] mixes between the input (0) and full sepia (1)."""
    check_frames(frames)
    if not 0 <= amount <= 1:
        raise KinemaError(f"sepia amount must be in [0, 1], got {amount}")
    f = _rgb(frames).astype(np.float32)
    toned = f @ _SEPIA.T  # [..., 3] x [3, 3]: output channel k = sum_j M[k, j] * in_j
    return _to_uint8(f * (1 - amount) + toned * amount)


def _default_font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except TypeError:  # Pillow < 10.1: one fixed bitmap size
        return ImageFont.load_default()


# Fonts with wide Unicode coverage commonly installed (Linux, macOS, Windows). Pillow's own font
# covers ASCII only; a caption with other characters uses the first of these that has them all.
SYSTEM_FONTS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/dejavu/DejaVuSans.ttf",
                "/usr/share/fonts/TTF/DejaVuSans.ttf", "/usr/share/fonts/noto/NotoSans-Regular.ttf",
                "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf", "/Library/Fonts/Arial Unicode.ttf",
                "/System/Library/Fonts/Supplemental/Arial Unicode.ttf", "C:/Windows/Fonts/arial.ttf")


def _missing_glyphs(font, text: str) -> list[str]:
    """Characters of ``text`` the font draws as its "missing glyph" box (the same mask as a
    private-use code point no font defines)."""
    def mask(ch):
        m = font.getmask(ch)
        return m.size, bytes(m)

    tofu = mask("\U0010FFFD")
    return sorted({ch for ch in text if not ch.isspace() and mask(ch) == tofu})


def _font(size: int, text: str = "", font_file=None) -> ImageFont.ImageFont:
    """A font that has a glyph for every character of ``text``: ``font_file`` if given, Pillow's
    default, else a common system font; a one-line KinemaError if none has them."""
    if font_file is not None:
        try:
            font = ImageFont.truetype(str(font_file), size)
        except OSError:
            raise KinemaError(f"{font_file}: not a readable TrueType/OpenType font") from None
        candidates = [font]
    else:
        candidates = [_default_font(size)]
        if not text.isascii():
            candidates += [ImageFont.truetype(p, size) for p in SYSTEM_FONTS if Path(p).is_file()]
    for font in candidates:
        if not _missing_glyphs(font, text):
            return font
    missing = "".join(_missing_glyphs(candidates[-1], text))
    where = str(font_file) if font_file is not None else "Pillow's font and the system fonts kinema knows"
    raise KinemaError(f"caption: {where} have no glyphs for {missing!r}; pass --font FILE.ttf with a font that does")


_POSITIONS = ("top-left", "top", "top-right", "bottom-left", "bottom", "bottom-right", "center")


def _anchor_xy(position: str, w: int, h: int, tw: int, th: int, margin: int) -> tuple[int, int]:
    if position not in _POSITIONS:
        raise KinemaError(f"unknown text position {position!r} (choose {', '.join(_POSITIONS)})")
    if position == "center":
        return (w - tw) // 2, (h - th) // 2
    vert, _, horiz = position.partition("-")
    y = margin if vert == "top" else h - th - margin
    x = {"left": margin, "right": w - tw - margin, "": (w - tw) // 2}[horiz]
    return x, y


def draw_text(frames: np.ndarray, texts: list[str], position: str = "bottom",
              size: int | None = None, color=(255, 255, 255), box: bool = True, font=None) -> np.ndarray:
    """Draw ``texts[t]`` on frame ``t`` (uint8 ``[T, H, W, 3]`` out), on a dark box when ``box``
    so the text stays legible on any background."""
    check_frames(frames)
    if len(texts) != len(frames):
        raise KinemaError(f"draw_text: {len(texts)} texts for {len(frames)} frames")
    frames = _rgb(frames)
    h, w = frames.shape[1:3]
    font = _font(size or max(8, h // 12), "".join(set("".join(texts))), font)
    margin = max(1, h // 50)
    out = np.empty_like(frames)
    for i, text in enumerate(texts):
        img = Image.fromarray(frames[i])
        draw = ImageDraw.Draw(img)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=font)
        x, y = _anchor_xy(position, w, h, x1 - x0, y1 - y0, margin)
        if box:
            draw.rectangle((x - 1, y - 1, x + (x1 - x0) + 1, y + (y1 - y0) + 1), fill=(0, 0, 0))
        draw.text((x - x0, y - y0), text, font=font, fill=tuple(color))
        out[i] = np.asarray(img)
    return out


def caption(frames: np.ndarray, text: str, position: str = "bottom", size: int | None = None,
            color=(255, 255, 255), box: bool = True, font=None) -> np.ndarray:
    """The same one-line ``text`` on every frame."""
    if not text or "\n" in text:
        raise KinemaError("caption: text must be one non-empty line")
    return draw_text(frames, [text] * len(check_frames(frames)), position, size, color, box, font)


def frame_counter(frames: np.ndarray, fps: float | None = None, start: int = 0,
                  position: str = "top-left", size: int | None = None, fmt: str | None = None) -> np.ndarray:
    """Write each frame's number (from ``start``) and, when ``fps`` is given, its time.

    ``fmt`` is a ``str.format`` pattern with ``{i}`` (frame number) and ``{t}`` (seconds).
    """
    check_frames(frames)
    if fmt is None:
        fmt = "{i}" if fps is None else "{i}  {t:.2f}s"
    try:
        texts = [fmt.format(i=start + k, t=(start + k) / fps if fps else 0.0) for k in range(len(frames))]
    except (KeyError, IndexError, ValueError) as err:
        raise KinemaError(f"frame counter: bad format {fmt!r} ({err})") from None
    return draw_text(frames, texts, position, size)
