"""Images a person can read: pixel-exact enlargement, one ink polarity, and labelled grids.

The pipelines return exactly what their VQ decoder produces (the digits task: 8×8 pixels, bright ink on black, since
its token *k* is ink intensity *k*/16). That is what metrics and tests need, and a speck in any image viewer. The
helpers here turn such images into viewable ones without changing what a pixel says:

* :func:`upscale` enlarges by an integer factor with nearest-neighbour resampling, so every source pixel becomes a
  ``scale`` × ``scale`` block of exactly its value (``image.resize(..., NEAREST)`` with ``size // scale`` recovers the
  source exactly); :func:`viewable_scale` picks the smallest factor that makes the longer side at least ``min_size``;
* ``invert=True`` turns an ink-intensity map (bright ink on dark) into the convention used everywhere in hf-dlm's
  own outputs — **dark ink on a light background**, as digits are drawn on paper; whether a pipeline's images are
  ink maps is the caller's knowledge (``hf_dlm.recipes.digits.shows_ink_inverted`` answers it for the digits
  decoder), never guessed from the pixels;
* :func:`image_grid` lays images out in rows and columns with gutters between them, a label above each column and
  beside each row, and a title;
* :func:`save_png` writes a PNG atomically (a complete old or complete new file, never a partial one);
* :func:`preview_token_grid` decodes a partly masked token grid (a MaskGIT step) with the masked cells painted in one
  colour, for showing the steps of a masked image pipeline as they unmask.

Images are PIL images or ``uint8`` / float ``numpy`` arrays.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from .._io import replace_file
from ._vq import decode_token_grid

ImageLike = Union[Image.Image, np.ndarray]

DEFAULT_MIN_SIZE = 256  # longer side, in pixels, of a "viewable" image: 8×8 digits become 256×256 (scale 32)
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


def _check_int(value: object, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"`{name}` must be an integer >= {low}, got {value!r}.")
    return int(value)


def as_pil(image: ImageLike, name: str = "image") -> Image.Image:
    """A PIL image from a PIL image, an (H, W) or (H, W, C) ``uint8`` array, or a float array in [0, 1] (what the
    pipelines return with ``output_type="np"``, one image of the batch)."""
    if isinstance(image, Image.Image):
        return image
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[-1] == 1:
            array = array[..., 0]
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
            raise ValueError(f"`{name}` as an array must have shape (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), got "
                             f"{array.shape}.")
        if array.dtype != np.uint8:
            if not np.issubdtype(array.dtype, np.floating):
                raise TypeError(f"`{name}` as an array must be uint8 or float in [0, 1], got dtype {array.dtype}.")
            if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
                raise ValueError(f"`{name}` as a float array must hold finite values in [0, 1], got the range "
                                 f"[{np.nanmin(array):g}, {np.nanmax(array):g}].")
            array = np.rint(array * 255).astype(np.uint8)
        return Image.fromarray(array)
    raise TypeError(f"`{name}` must be a PIL image or a numpy array, got {type(image).__name__}.")


def invert_polarity(image: ImageLike) -> Image.Image:
    """``255 − value`` in every colour channel (alpha kept): bright ink on black becomes dark ink on white."""
    image = as_pil(image)
    if image.mode in ("RGBA", "LA"):
        *colours, alpha = image.split()
        inverted = [Image.eval(channel, lambda v: 255 - v) for channel in colours]
        return Image.merge(image.mode, [*inverted, alpha])
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    return Image.eval(image, lambda v: 255 - v)


def viewable_scale(width: int, height: int, min_size: int = DEFAULT_MIN_SIZE) -> int:
    """The smallest integer factor that makes the longer side of a ``width`` × ``height`` image at least
    ``min_size`` pixels (1 when it already is)."""
    width, height = _check_int(width, "width", 1), _check_int(height, "height", 1)
    min_size = _check_int(min_size, "min_size", 1)
    return max(1, math.ceil(min_size / max(width, height)))


def upscale(image: ImageLike, scale: int | None = None, *, min_size: int = DEFAULT_MIN_SIZE) -> Image.Image:
    """Enlarge ``image`` by the integer ``scale`` (default: :func:`viewable_scale` for ``min_size``) with
    nearest-neighbour resampling: pixel (x, y) of the source fills the block [x·s, (x+1)·s) × [y·s, (y+1)·s)."""
    image = as_pil(image)
    scale = viewable_scale(*image.size, min_size=min_size) if scale is None else _check_int(scale, "scale", 1)
    if scale == 1:
        return image.copy()
    return image.resize((image.width * scale, image.height * scale), Image.NEAREST)


def to_viewable(image: ImageLike, scale: int | None = None, *, invert: bool = False,
                min_size: int = DEFAULT_MIN_SIZE) -> Image.Image:
    """:func:`upscale`, after :func:`invert_polarity` when ``invert`` (an ink-intensity image shown as dark ink on
    light)."""
    if not isinstance(invert, bool):
        raise TypeError(f"`invert` must be True or False, got {invert!r}.")
    image = as_pil(image)
    return upscale(invert_polarity(image) if invert else image, scale, min_size=min_size)


def save_png(image: ImageLike, path: str | os.PathLike) -> Path:
    """Write ``image`` as a PNG at ``path`` atomically (parent folders are created); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"`path` must end in .png, got {str(path)!r}.")
    image = as_pil(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    return replace_file(path, lambda tmp: image.save(tmp, format="PNG"))


def preview_token_grid(pipe, tokens: torch.LongTensor, mask_token_id: int,
                       masked_colour: tuple[int, int, int] = (96, 150, 255), invert: bool = False) -> Image.Image:
    """The first grid of ``tokens`` (shape (batch, h, w), codebook ids or ``mask_token_id``) decoded by ``pipe``'s
    VQ decoder, with every still-masked cell painted ``masked_colour`` (masked cells are decoded as code 0 and then
    covered, so what shows is exactly the committed tokens). ``invert`` as in :func:`to_viewable`. Size: the
    decoder's (h·f, w·f) for its downscale factor f."""
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3 or tokens.dtype.is_floating_point:
        raise TypeError(f"`tokens` must be an integer tensor of shape (batch, h, w), got "
                        f"{getattr(tokens, 'shape', type(tokens).__name__)}.")
    if len(masked_colour) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in masked_colour):
        raise ValueError(f"`masked_colour` must be three integers in [0, 255], got {masked_colour!r}.")
    grid = tokens[:1]
    masked = grid == mask_token_id
    with torch.no_grad():
        pixels = decode_token_grid(pipe.vqvae, torch.where(masked, torch.zeros_like(grid), grid),
                                   pipe.image_processor, "np")[0]
    image = as_pil(pixels).convert("RGB")
    if invert:
        image = invert_polarity(image)
    factor = image.height // grid.shape[1]
    cover = np.kron(masked[0].cpu().numpy(), np.ones((factor, factor), dtype=bool))
    array = np.array(image)
    array[cover] = masked_colour
    return Image.fromarray(array)


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _text_size(draw: ImageDraw.ImageDraw, text: str, font) -> tuple[int, int]:
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    return right - left, bottom - top


def image_grid(images: Sequence[ImageLike], columns: int, *, column_labels: Sequence[str] | None = None,
               row_labels: Sequence[str] | None = None, title: str | None = None, cell_size: int | None = None,
               gutter: int = 8, margin: int = 12, invert: bool = False, font_size: int = 14,
               return_layout: bool = False) -> Image.Image | tuple[Image.Image, GridLayout]:
    """A labelled grid: ``images`` in row-major order, ``columns`` per row, on a white background.

    Args:
        images: the cells (all the same size), row by row; the last row may be short.
        columns: cells per row.
        column_labels: one label per column, centred above it (e.g. ``["zero", ..., "nine"]``).
        row_labels: one label per row, right-aligned in a band left of it (e.g. ``["seed 0", ...]``).
        title: a line centred above everything.
        cell_size: the displayed size of a cell's longer side; each image is enlarged by the integer factor
            ``cell_size // longer side`` (nearest neighbour, pixel-exact). Default: :func:`viewable_scale` for 64 px.
        gutter: white pixels between neighbouring cells (and between labels and cells).
        margin: white pixels around everything.
        invert: show ink-intensity images as dark ink on light (see :func:`invert_polarity`).
        font_size: pixel size of labels; the title is 1.3× larger.

        return_layout: also return the [`GridLayout`] (where each cell and label band lies).

    Returns:
        An RGB image, or ``(image, layout)`` with ``return_layout``.
    """
    if not isinstance(images, Sequence) or isinstance(images, (str, bytes)) or len(images) == 0:
        raise ValueError(f"`images` must be a non-empty sequence of images, got {type(images).__name__}.")
    columns = _check_int(columns, "columns", 1)
    gutter, margin = _check_int(gutter, "gutter", 0), _check_int(margin, "margin", 0)
    font_size = _check_int(font_size, "font_size", 4)
    cells = [as_pil(image, f"images[{i}]") for i, image in enumerate(images)]
    size = cells[0].size
    odd = [i for i, cell in enumerate(cells) if cell.size != size]
    if odd:
        raise ValueError(f"`images` must all have the same size; images[0] is {size[0]}×{size[1]}, images[{odd[0]}] "
                         f"is {cells[odd[0]].size[0]}×{cells[odd[0]].size[1]}.")
    columns = min(columns, len(cells))
    rows = math.ceil(len(cells) / columns)
    if column_labels is not None and len(column_labels) != columns:
        raise ValueError(f"`column_labels` must have one label per column ({columns}), got {len(column_labels)}.")
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"`row_labels` must have one label per row ({rows}), got {len(row_labels)}.")
    if cell_size is None:
        scale = viewable_scale(*size, min_size=64)
    else:
        cell_size = _check_int(cell_size, "cell_size", max(size))
        scale = cell_size // max(size)
    cell_w, cell_h = size[0] * scale, size[1] * scale
    layout = GridLayout(columns, rows, cell_w, cell_h, gutter, margin, font_size, column_labels, row_labels, title)

    canvas = Image.new("RGB", (layout.width, layout.height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    label_font, title_font = _font(font_size), _font(layout.title_font_size)
    if title:
        w, _ = _text_size(draw, title, title_font)
        draw.text(((layout.width - w) // 2, margin), title, fill=TEXT, font=title_font)
    if column_labels is not None:
        for c, label in enumerate(column_labels):
            x, _ = layout.cell_origin(0, c)
            w, _ = _text_size(draw, str(label), label_font)
            draw.text((x + (cell_w - w) // 2, layout.column_label_top), str(label), fill=TEXT, font=label_font)
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            _, y = layout.cell_origin(r, 0)
            w, h = _text_size(draw, str(label), label_font)
            draw.text((layout.grid_left - gutter - w, y + (cell_h - h) // 2), str(label), fill=TEXT,
                      font=label_font)
    for i, cell in enumerate(cells):
        shown = to_viewable(cell, scale, invert=invert).convert("RGB")
        canvas.paste(shown, layout.cell_origin(i // columns, i % columns))
    return (canvas, layout) if return_layout else canvas


class GridLayout:
    """Where :func:`image_grid` puts things (all in pixels): ``cell_origin(row, column)`` is a cell's top-left
    corner; the column labels sit in the band from ``column_label_top`` to ``grid_top − gutter``; the row labels
    right-align at ``grid_left − gutter``."""

    def __init__(self, columns: int, rows: int, cell_w: int, cell_h: int, gutter: int, margin: int, font_size: int,
                 column_labels: Sequence[str] | None, row_labels: Sequence[str] | None, title: str | None) -> None:
        self.columns, self.rows, self.cell_w, self.cell_h, self.gutter = columns, rows, cell_w, cell_h, gutter
        self.title_font_size = round(font_size * 1.3)
        probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
        line = round(font_size * 1.4)
        top = margin
        if title:
            top += round(self.title_font_size * 1.4) + gutter
        self.column_label_top = top
        if column_labels is not None:
            top += line + gutter
        self.grid_top = top
        label_width = 0
        if row_labels is not None:
            label_width = max(_text_size(probe, str(label), _font(font_size))[0] for label in row_labels) + gutter
        self.grid_left = margin + label_width
        grid_w = columns * cell_w + (columns - 1) * gutter
        grid_h = rows * cell_h + (rows - 1) * gutter
        title_w = _text_size(probe, title, _font(self.title_font_size))[0] if title else 0
        self.width = max(self.grid_left + grid_w, title_w) + margin
        self.height = self.grid_top + grid_h + margin

    def cell_origin(self, row: int, column: int) -> tuple[int, int]:
        return (self.grid_left + column * (self.cell_w + self.gutter),
                self.grid_top + row * (self.cell_h + self.gutter))


__all__ = ["DEFAULT_MIN_SIZE", "GridLayout", "as_pil", "image_grid", "invert_polarity", "preview_token_grid",
           "save_png", "to_viewable", "upscale", "viewable_scale"]
