"""``hf-dlm generate-image``: images from a saved masked (MaskGIT family, Di[M]O one-step) or autoregressive
image pipeline."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from ._errors import CLIError
from ._parsing import SAVED, add_verb, non_empty, non_negative_float, non_negative_int, positive_int, seed

EXAMPLES = """examples:
  hf-dlm generate-image outputs/demo-digits --prompt "a handwritten seven" --steps 4 --output seven.png
  hf-dlm generate-image my-org/digits-class --class-label 3 --class-label 5 --output digits.png
  hf-dlm generate-image outputs/dimo-digits --class-label 7 --steps 1 --output one-step.png
  hf-dlm generate-image outputs/ar-digits --prompt "a seven" --guidance-scale 2 --output ar.png
  hf-dlm generate-image outputs/demo-digits --prompt "a handwritten two" --scale 1 --raw --output exact-8x8.png

PNG files are viewable by default: each image is enlarged by an integer factor with nearest-neighbour resampling
(pixel-exact blocks; the smallest factor giving at least 256 pixels on the longer side unless --scale is given), and
ink-intensity images (the digits decoder's) are written as dark ink on white, the convention of every hf-dlm
figure. --raw writes the decoder's exact pixels instead (8x8 for digits, as the pipeline returns them)."""


def add_parser(commands: Any) -> None:
    parser = add_verb(commands, "generate-image", help="generate images with a saved pipeline (folder or hub id)",
                      description="Generate images with an hf-dlm image pipeline and write PNG files (one per image: "
                      "OUTPUT, or OUTPUT-<i>.png for several).\n\n" + EXAMPLES)
    parser.add_argument("pipeline", help=SAVED)
    parser.add_argument("--prompt", action="append", default=None, type=non_empty,
                        help="a caption (repeat for a batch)")
    parser.add_argument("--class-label", action="append", type=non_negative_int, default=None,
                        help="a class label for class-conditional pipelines (repeat for a batch)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="decoding steps (masked pipelines; default 12, or 1 for a Di[M]O generator)")
    parser.add_argument("--guidance-scale", type=non_negative_float, default=None,
                        help="classifier-free guidance scale (default 10, or 1 for a Di[M]O generator)")
    parser.add_argument("--num-images", type=positive_int, default=1, help="images per prompt or label")
    parser.add_argument("--seed", type=seed, default=0)
    parser.add_argument("--output", default="image.png", help="PNG path (default: image.png)")
    parser.add_argument("--scale", type=positive_int, default=None,
                        help="integer enlargement, nearest neighbour (default: the smallest giving >= 256 px)")
    parser.add_argument("--raw", action="store_true",
                        help="write the decoder's exact pixels: no enlargement, no polarity change")
    parser.set_defaults(run=run, check=check)


def _output_paths(output: str, count: int) -> list[str]:
    if count == 1:
        return [output]
    stem = output[:-4]
    return [f"{stem}-{i}.png" for i in range(count)]


def check(args: argparse.Namespace) -> None:
    """Everything that can be checked before the pipeline is loaded."""
    from ._loading import PIPELINE_FILES, check_output_file, check_saved

    if args.raw and args.scale not in (None, 1):
        raise CLIError(f"`--raw` writes the decoder's exact pixels; it cannot be combined with `--scale` "
                       f"{args.scale} (leave `--scale` out, or pass 1).")
    if (args.prompt is None) == (args.class_label is None):
        raise CLIError("give `--prompt` (text-conditional) or `--class-label` (class-conditional), one of them.")
    check_output_file(args.output, "`--output`", suffix=".png")
    check_saved(args.pipeline, "`pipeline`", files=PIPELINE_FILES)


def _check_labels(labels: list[int], pipe: Any) -> None:
    num_classes = getattr(pipe, "num_classes", None) or 0
    if num_classes <= 0:
        raise CLIError("`--class-label` needs a class-conditional pipeline; this one takes `--prompt`.")
    outside = [label for label in labels if label >= num_classes]
    if outside:
        raise CLIError(f"`--class-label` {outside[0]} is outside the pipeline's classes (0 to {num_classes - 1}).")


def run(args: argparse.Namespace) -> int:
    import torch

    from ..pipelines import AutoregressiveImagePipeline
    from ..pipelines.images import save_png, to_viewable
    from ..recipes.digits import shows_ink_inverted
    from ._loading import load_pipeline

    pipe = load_pipeline(args.pipeline)
    pipe.set_progress_bar_config(disable=not sys.stderr.isatty())
    generator = torch.Generator().manual_seed(args.seed)
    kwargs: dict[str, Any] = {"num_images_per_prompt": args.num_images, "generator": generator}
    if args.guidance_scale is not None:
        kwargs["guidance_scale"] = args.guidance_scale
    if isinstance(pipe, AutoregressiveImagePipeline):
        if args.class_label is not None or args.steps is not None:
            raise CLIError("an autoregressive pipeline takes `--prompt` and no `--class-label` / `--steps`.")
        images = pipe(prompt=args.prompt, **kwargs).images
    else:
        if args.steps is not None:
            kwargs["num_inference_steps"] = args.steps
        if args.class_label is not None:
            _check_labels(args.class_label, pipe)
            condition = {"class_labels": args.class_label}
        else:
            condition = {"prompt": args.prompt}
        images = pipe(**condition, **kwargs).images
    paths = _output_paths(args.output, len(images))
    invert = not args.raw and shows_ink_inverted(pipe)
    for image, path in zip(images, paths):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        save_png(image if args.raw else to_viewable(image, args.scale, invert=invert), path)
        print(path)
    return 0
