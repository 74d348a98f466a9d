"""``hf-dlm generate-image``: images from a saved masked (MaskGIT family, Di[M]O one-step) or autoregressive
image pipeline."""

from __future__ import annotations

import argparse
import os

import torch

from ._parsing import SAVED, add_verb

EXAMPLES = """examples:
  hf-dlm generate-image outputs/demo-digits --prompt "a handwritten seven" --steps 4 --output seven.png
  hf-dlm generate-image my-org/digits-class --class-label 3 --class-label 5 --output digits.png
  hf-dlm generate-image outputs/dimo-digits --class-label 7 --steps 1 --output one-step.png
  hf-dlm generate-image outputs/ar-digits --prompt "a seven" --guidance-scale 2 --output ar.png"""


def add_parser(commands) -> None:
    parser = add_verb(commands, "generate-image", help="generate images with a saved pipeline (folder or hub id)",
                                 description="Generate images with an hf-dlm image pipeline and write PNG files "
                                 "(one per image: OUTPUT, or OUTPUT-<i>.png for several).\n\n" + EXAMPLES)
    parser.add_argument("pipeline", help=SAVED)
    parser.add_argument("--prompt", action="append", default=None, help="a caption (repeat for a batch)")
    parser.add_argument("--class-label", action="append", type=int, default=None,
                        help="a class label for class-conditional pipelines (repeat for a batch)")
    parser.add_argument("--steps", type=int, default=None,
                        help="decoding steps (masked pipelines; default 12, or 1 for a Di[M]O generator)")
    parser.add_argument("--guidance-scale", type=float, default=None,
                        help="classifier-free guidance scale (default 10, or 1 for a Di[M]O generator)")
    parser.add_argument("--num-images", type=int, default=1, help="images per prompt or label")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output", default="image.png", help="PNG path (default: image.png)")
    parser.set_defaults(run=run)


def _output_paths(output: str, count: int) -> list[str]:
    if not output.lower().endswith(".png"):
        raise ValueError(f"`--output` must be a .png path, got {output!r}.")
    if count == 1:
        return [output]
    stem = output[:-4]
    return [f"{stem}-{i}.png" for i in range(count)]


def run(args: argparse.Namespace) -> int:
    from ..pipelines import AutoregressiveImagePipeline
    from ._loading import load_pipeline

    if (args.prompt is None) == (args.class_label is None):
        raise ValueError("give `--prompt` (text-conditional) or `--class-label` (class-conditional), one of them.")
    if args.num_images < 1:
        raise ValueError(f"`--num-images` must be >= 1, got {args.num_images}.")
    pipe = load_pipeline(args.pipeline)
    generator = torch.Generator().manual_seed(args.seed)
    kwargs = {"num_images_per_prompt": args.num_images, "generator": generator}
    if args.guidance_scale is not None:
        kwargs["guidance_scale"] = args.guidance_scale
    if isinstance(pipe, AutoregressiveImagePipeline):
        if args.class_label is not None or args.steps is not None:
            raise ValueError("an autoregressive pipeline takes `--prompt` and no `--class-label` / `--steps`.")
        images = pipe(prompt=args.prompt, **kwargs).images
    else:
        if args.steps is not None:
            kwargs["num_inference_steps"] = args.steps
        condition = {"prompt": args.prompt} if args.prompt is not None else {"class_labels": args.class_label}
        images = pipe(**condition, **kwargs).images
    paths = _output_paths(args.output, len(images))
    for image, path in zip(images, paths):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        image.save(path)
        print(path)
    return 0
