"""Regenerate the pictures of the README and docs: the app's tabs and the labelled digits grid.

    python integrations/space/screenshot.py            # after `make demo`; or `make screenshots`
    python integrations/space/screenshot.py --parts grid --image outputs/demo-digits

Writes ``docs/images/app_text.png`` (the Text tab after a run: the canvas and every pass), ``app_compare.png`` (Side by
side), ``app_images.png`` (Images: the MaskGIT steps and the final image) and ``digits_grid.png`` (one labelled column
per digit, four samples each, dark ink on white). The app is served on 127.0.0.1 and photographed by headless
Chromium through Playwright (Debian's ``chromium``; no browser is downloaded). PNGs are written with a 64-colour
palette to stay small. Models are the folders ``make demo`` writes, or any folder / hub id given.
"""

from __future__ import annotations

import argparse
import io
import logging
import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
PARTS = ("text", "compare", "images", "grid")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
logger = logging.getLogger("hf_dlm.space.screenshot")


def _parts(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if unknown or not parts:
        raise argparse.ArgumentTypeError(f"must be a comma-separated subset of {','.join(PARTS)}, got {text!r}")
    return parts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="outputs/demo")
    parser.add_argument("--student", default="outputs/dimo-text/generator")
    parser.add_argument("--quantized", default="outputs/demo-2bit")
    parser.add_argument("--image", default="outputs/demo-digits")
    parser.add_argument("--output", default=str(ROOT / "docs" / "images"), help="folder of the PNGs")
    parser.add_argument("--parts", type=_parts, default=list(PARTS), help=f"subset of {','.join(PARTS)}")
    parser.add_argument("--prompt", default=None, help="text prompt (default: the first words of an oracle sample)")
    parser.add_argument("--guidance", type=float, default=3.0, help="guidance scale of the grid and the Images tab")
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    return parser.parse_args(argv)


def _small_png(data: bytes, path: Path) -> Path:
    from PIL import Image

    from hf_dlm.pipelines.images import save_png

    image = Image.open(io.BytesIO(data)).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    return save_png(image, path)


def _set(page, selector: str, value) -> None:
    field = page.locator(f"{selector} input, {selector} textarea").first
    field.fill(str(value))
    field.press("Tab")


def _default_prompt() -> str:
    from hf_dlm.evaluation.oracle import OracleLanguage

    oracle = OracleLanguage()
    return oracle.decode(oracle.sample(1, 6, seed=11))[0]


def photograph_app(args: argparse.Namespace, output: Path) -> list[Path]:
    """Serve the app, run each requested tab once and photograph it."""
    from playwright.sync_api import sync_playwright

    from hf_dlm.cli.app import load_space_module

    space = load_space_module(HERE)
    sources = space.AppSources(teacher=args.teacher, student=args.student, quantized=args.quantized,
                               image=args.image)
    demo = space.build_demo(sources)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    _, url = space.launch(demo, host="127.0.0.1", port=port, block=False, quiet=True)
    prompt = args.prompt or _default_prompt()
    written = []
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=args.chromium, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 800}, device_scale_factor=1)
            page.set_default_timeout(300_000)
            page.goto(url)
            page.wait_for_selector("#text-prompt textarea")
            if "text" in args.parts:
                _set(page, "#text-prompt", prompt)
                for selector, value in (("#text-steps", 12), ("#text-length", 16), ("#text-block", 8),
                                        ("#text-temperature", 1.0), ("#text-seed", 3), ("#text-delay", 0)):
                    _set(page, selector, value)
                page.click("#text-run")
                page.wait_for_selector("#text-canvas #text-done, #text-status .error-line")
                written.append(_small_png(page.screenshot(full_page=True), output / "app_text.png"))
            if "compare" in args.parts:
                page.get_by_role("tab", name="Side by side").click()
                _set(page, "#compare-prompt", prompt)
                _set(page, "#compare-steps", 24)
                page.click("#compare-run")
                page.wait_for_selector("#compare-result, #compare-status .error-line")
                written.append(_small_png(page.screenshot(full_page=True), output / "app_compare.png"))
            if "images" in args.parts:
                page.get_by_role("tab", name="Images").click()
                _set(page, "#image-steps-count", 12)
                _set(page, "#image-scale", 32)
                _set(page, "#image-guidance", args.guidance)
                page.click("#image-run")
                page.wait_for_function("document.querySelector('#image-status').innerText.includes('done') || "
                                       "document.querySelector('#image-status .error-line') !== null")
                page.wait_for_timeout(500)  # the gallery's images finish loading
                written.append(_small_png(page.screenshot(full_page=True), output / "app_images.png"))
            browser.close()
    finally:
        demo.close()
    return written


def digits_grid(args: argparse.Namespace, output: Path) -> Path:
    from hf_dlm.cli._loading import load_pipeline
    from hf_dlm.recipes.digits import save_digit_grid

    pipe = load_pipeline(args.image, "--image")
    return save_digit_grid(pipe, output / "digits_grid.png", num_inference_steps=16, rows=4,
                           guidance_scale=args.guidance, seed=0, scale=6)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    needed = ({"teacher", "quantized"} if {"text", "compare"} & set(args.parts) else set()) \
        | ({"image"} if {"images", "grid"} & set(args.parts) else set())
    missing = [f"--{role} {getattr(args, role)}" for role in sorted(needed)
               if getattr(args, role).startswith("outputs/") and not Path(getattr(args, role)).is_dir()]
    if missing:
        logger.error("screenshot.py: %s: no such folder (run `make demo` first, or pass the folders)",
                     ", ".join(missing))
        return 3
    if not Path(args.chromium).is_file() and set(args.parts) - {"grid"}:
        logger.error("screenshot.py: no Chromium at %s (apt-get install chromium, or pass --chromium)", args.chromium)
        return 3
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    written = []
    if set(args.parts) - {"grid"}:
        written += photograph_app(args, output)
    if "grid" in args.parts:
        written.append(digits_grid(args, output))
    for path in written:
        logger.info("%s (%d bytes)", path, path.stat().st_size)
    return 0


if __name__ == "__main__":
    sys.exit(main())
