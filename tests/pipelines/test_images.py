"""Images for people: pixel-exact enlargement of the 8×8 codes, one polarity, labelled grids with gutters."""

import numpy as np
import pytest
import torch
from PIL import Image

from hf_dlm.evaluation.digits import NUM_LEVELS, digits_vqvae, pixels_to_levels
from hf_dlm.pipelines._vq import decode_token_grid
from hf_dlm.pipelines.images import (image_grid, invert_polarity, preview_token_grid, save_png, to_viewable, upscale,
                                     viewable_scale)
from hf_dlm.recipes.digits import build_digits_pipeline, render_digit_grid, shows_ink_inverted

WHITE = (255, 255, 255)


@pytest.fixture(scope="module")
def digits_pipe():
    return build_digits_pipeline(hidden_size=32, num_layers=1, text_hidden_size=32)


def _decoded_codes(pipe, tokens):
    """The digits decoder's exact 8×8 PIL images of (B, 8, 8) codes (what the pipeline returns)."""
    with torch.no_grad():
        return decode_token_grid(pipe.vqvae, tokens, pipe.image_processor, "pil")


def test_upscale_of_the_8x8_codes_is_pixel_exact(digits_pipe):
    tokens = torch.randint(0, NUM_LEVELS, (2, 8, 8), generator=torch.Generator().manual_seed(0))
    images = _decoded_codes(digits_pipe, tokens)
    assert images[0].size == (8, 8)
    assert torch.equal(pixels_to_levels(images), tokens)  # the decoder is exact
    for image, codes in zip(images, tokens):
        big = upscale(image)  # default: the smallest factor giving >= 256 px
        assert big.size == (256, 256) and viewable_scale(8, 8) == 32
        array, source = np.asarray(big), np.asarray(image)
        for dy in range(32):  # every pixel of each 32 x 32 block is its source pixel
            for dx in (0, 13, 31):
                assert np.array_equal(array[dy::32, dx::32], source)
        assert torch.equal(pixels_to_levels([big.resize((8, 8), Image.NEAREST)]), codes.unsqueeze(0))
        shown = to_viewable(image, 4, invert=True)  # dark ink on light: level k shows as 255 - 255 k / 16
        assert shown.size == (32, 32)
        assert np.array_equal(np.asarray(shown)[::4, ::4], 255 - source)
    assert upscale(images[0], 1).size == (8, 8)


def test_viewable_scale_and_bad_arguments(tmp_path):
    assert viewable_scale(8, 8, min_size=100) == 13 and viewable_scale(300, 10) == 1
    image = Image.new("L", (8, 8))
    with pytest.raises(ValueError, match="`scale` must be an integer >= 1, got 0"):
        upscale(image, 0)
    with pytest.raises(ValueError, match="`scale`.*2.5"):
        upscale(image, 2.5)
    with pytest.raises(TypeError, match="`invert` must be True or False"):
        to_viewable(image, invert="yes")
    with pytest.raises(ValueError, match=r"finite values in \[0, 1\]"):
        to_viewable(np.full((8, 8), 2.0))
    with pytest.raises(TypeError, match="PIL image or a numpy array"):
        upscale([[0, 1]])
    with pytest.raises(ValueError, match="must end in .png"):
        save_png(image, tmp_path / "x.jpg")
    path = save_png(upscale(image, 2), tmp_path / "sub" / "x.png")
    assert Image.open(path).size == (16, 16) and [p.name for p in path.parent.iterdir()] == ["x.png"]


def test_invert_polarity_keeps_alpha():
    rgba = Image.new("RGBA", (2, 2), (10, 20, 30, 40))
    assert invert_polarity(rgba).getpixel((0, 0)) == (245, 235, 225, 40)
    assert invert_polarity(np.array([[0, 255]], dtype=np.uint8)).getpixel((0, 0)) == 255


def test_grid_places_labels_above_columns_and_beside_rows_with_white_gutters():
    cells = [np.full((8, 8), 0, dtype=np.uint8) for _ in range(6)]  # black squares
    grid, layout = image_grid(cells, columns=3, column_labels=["zero", "one", "two"], row_labels=["s1", "s2"],
                              title="a title", cell_size=32, gutter=10, margin=12, return_layout=True)
    array = np.asarray(grid)
    assert grid.mode == "RGB" and grid.size == (layout.width, layout.height)
    dark = array.sum(axis=2) < 3 * 128
    for r in range(2):
        for c in range(3):
            x, y = layout.cell_origin(r, c)
            assert dark[y:y + 32, x:x + 32].all()  # the cell, enlarged 4x
            if c < 2:  # the gutter to the right of it is white from the top of the row to its bottom
                assert (array[y:y + 32, x + 32:x + 42] == 255).all()
            if r < 1:
                assert (array[y + 32:y + 42, x:x + 32] == 255).all()
    label_band = slice(layout.column_label_top, layout.grid_top - layout.gutter)
    for c in range(3):  # each column's label is drawn inside that column's span, above it
        x, _ = layout.cell_origin(0, c)
        assert dark[label_band, x:x + 32].any()
        assert not dark[label_band, x + 32:x + 32 + layout.gutter].any()  # never in the gutters between columns
    for r in range(2):  # row labels sit left of the grid, at the row's height
        _, y = layout.cell_origin(r, 0)
        assert dark[y:y + 32, :layout.grid_left - layout.gutter].any()
    assert dark[:layout.column_label_top, :].any()  # the title
    assert not dark[:, :12].any() and not dark[:, -12:].any() and not dark[-12:, :].any()  # margins


def test_grid_polarity_and_checks():
    ink = np.zeros((8, 8), dtype=np.uint8)
    ink[2:6, 3:5] = 255  # bright ink on black, as the digits decoder writes it
    grid, layout = image_grid([ink], columns=1, cell_size=16, invert=True, return_layout=True)
    x, y = layout.cell_origin(0, 0)
    cell = np.asarray(grid)[y:y + 16, x:x + 16, 0]
    assert cell[5, 7] == 0 and cell[0, 0] == 255  # dark ink on a white page
    with pytest.raises(ValueError, match="one label per column"):
        image_grid([ink, ink], columns=2, column_labels=["a"])
    with pytest.raises(ValueError, match="same size"):
        image_grid([ink, np.zeros((4, 4), dtype=np.uint8)], columns=2)
    with pytest.raises(ValueError, match="`cell_size` must be an integer >= 8"):
        image_grid([ink], columns=1, cell_size=4)
    with pytest.raises(ValueError, match="non-empty sequence"):
        image_grid([], columns=1)


def test_digit_grid_is_labelled_dark_on_white(tmp_path):
    tokens = torch.zeros(20, 64, dtype=torch.long)
    tokens[:, 27] = NUM_LEVELS - 1  # one full-ink pixel per image
    path = render_digit_grid(tokens, tmp_path / "grid.png", rows=2, scale=4, title="digits")
    grid = np.asarray(Image.open(path).convert("L"))
    assert grid.shape[1] > 10 * 32 and grid.shape[0] > 2 * 32  # gutters, labels and title around 10 x 2 cells
    assert grid.min() == 0  # full ink is black
    assert (grid == 255).mean() > 0.5  # a white page


def test_ink_polarity_is_decided_by_the_decoder(digits_pipe):
    from tests.utils.image_pipelines import class_pipeline

    assert shows_ink_inverted(digits_pipe)
    assert not shows_ink_inverted(class_pipeline())
    other = build_digits_pipeline(hidden_size=32, num_layers=1, text_hidden_size=32)
    with torch.no_grad():
        other.vqvae.quantize.embedding.weight.add_(0.5)  # same layout, different codebook: not the digits decoder
    assert not shows_ink_inverted(other)
    assert digits_vqvae().config.num_vq_embeddings == NUM_LEVELS


def test_preview_paints_masked_cells(digits_pipe):
    tokens = torch.full((1, 8, 8), NUM_LEVELS, dtype=torch.long)  # all masked
    tokens[0, :4] = 8  # the top half committed at level 8
    preview = np.asarray(preview_token_grid(digits_pipe, tokens, NUM_LEVELS, masked_colour=(1, 2, 3), invert=True))
    assert preview.shape == (8, 8, 3)
    assert (preview[4:] == (1, 2, 3)).all()
    assert (preview[:4] == 255 - round(8 / 16 * 255)).all()
    with pytest.raises(TypeError, match="`tokens` must be an integer tensor"):
        preview_token_grid(digits_pipe, tokens.float(), NUM_LEVELS)
