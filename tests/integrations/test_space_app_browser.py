"""End to end in a real browser: the Gradio Space app served on 127.0.0.1, driven by headless Chromium through
Playwright (Debian's /usr/bin/chromium; no browser is downloaded). The app is started once for the module with tiny
models built in-process; the screenshots go to a temporary folder.

CI (`.ci/run`) installs Debian's chromium with apt-get before `make test`; the `dev` extra installs gradio and
playwright. Where /usr/bin/chromium is missing the module is skipped, saying so.
"""

import io
import os
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("gradio", reason="the Space app needs gradio (the `dev` and `app` extras install it)")
sync_api = pytest.importorskip("playwright.sync_api", reason="the browser test needs playwright (the `dev` extra)")

from PIL import Image  # noqa: E402

from hf_dlm.pipelines.images import to_viewable  # noqa: E402
from tests.utils.space_app import free_port, space_module, tiny_digits_pipeline, tiny_oracle_llada  # noqa: E402

pytestmark = pytest.mark.slow  # a browser and a server: about 30 s on 2 cores

CHROMIUM = os.environ.get("HF_DLM_CHROMIUM", "/usr/bin/chromium")
if not os.path.isfile(CHROMIUM):
    pytest.skip(f"no Chromium at {CHROMIUM}: install Debian's `chromium` package (.ci/run does) or set "
                "HF_DLM_CHROMIUM", allow_module_level=True)

# what the machine's closed network needs: no sandbox as root, no GPU, no QUIC and none of Chromium's background calls
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 90_000

# records every distinct state of an element while the app streams into it
RECORD = """([selector, key]) => {
  window[key] = [];
  const target = document.querySelector(selector);
  const note = () => { const v = target.innerHTML; const seen = window[key];
                       if (!seen.length || seen[seen.length - 1] !== v) seen.push(v); };
  new MutationObserver(note).observe(target, {subtree: true, childList: true, characterData: true,
                                              attributes: true});
}"""


@pytest.fixture(scope="module")
def served():
    """(url, teacher (model, tokenizer), image pipeline): the app on a free port of 127.0.0.1 for this module."""
    space = space_module()
    teacher = tiny_oracle_llada(0)
    pipe = tiny_digits_pipeline()
    demo = space.build_demo(space.AppSources(teacher=teacher, student=None, quantized=None, image=pipe))
    _, url = space.launch(demo, host="127.0.0.1", port=free_port(), block=False, quiet=True)
    assert url.startswith("http://127.0.0.1:")
    try:
        yield url, teacher, pipe
    finally:
        demo.close()


@pytest.fixture(scope="module")
def page(served, tmp_path_factory):
    with sync_api.sync_playwright() as playwright:
        profile = tmp_path_factory.mktemp("chromium-profile")
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000})
        page = context.pages[0] if context.pages else context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(served[0])
        page.wait_for_selector("#text-prompt textarea")
        try:
            yield page
        finally:
            context.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("screenshots")


def _set(page, selector: str, value) -> None:
    field = page.locator(f"{selector} input, {selector} textarea").first
    field.fill(str(value))
    field.press("Tab")  # gradio reads a number field on change


def test_text_canvas_denoises_step_by_step_and_ends_with_generate(served, page, shots):
    _, (model, tokenizer), _ = served
    page.get_by_role("tab", name="Text").click()
    # an empty prompt: one line in the page, no traceback
    page.click("#text-run")
    page.wait_for_selector("#text-status .error-line")
    assert "the prompt is empty" in page.inner_text("#text-status")
    assert "Traceback" not in page.content()

    prompt, seed = "the a of", 7
    _set(page, "#text-prompt", prompt)
    for selector, value in (("#text-steps", 8), ("#text-length", 8), ("#text-block", 4), ("#text-temperature", 1.0),
                            ("#text-seed", seed), ("#text-delay", 0.2)):
        _set(page, selector, value)
    page.evaluate(RECORD, ["#text-canvas", "__canvas"])
    page.click("#text-run")
    page.wait_for_selector("#text-canvas #text-done")
    page.screenshot(path=str(shots / "text.png"), full_page=True)

    states = page.evaluate("window.__canvas")
    masked = [state.count("tok mask") for state in states if "tok " in state]
    assert len(masked) >= 4, states  # the live view showed intermediate canvases, not only the answer
    assert max(masked) == 8 and masked[-1] == 0
    assert any(0 < m < 8 for m in masked)  # partly denoised canvases were on screen
    assert all(a >= b for a, b in zip(masked, masked[1:]))  # masks only ever disappear
    assert page.locator("#text-history .frame").count() == 1 + 8  # start + one row per pass

    ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    expected = model.generate(ids, steps=8, max_new_tokens=8, block_length=4, remasking="low_confidence",
                              temperature=1.0, generator=torch.Generator().manual_seed(seed))
    answer = tokenizer.decode(expected[0, ids.shape[1]:], skip_special_tokens=True).strip()
    assert page.input_value("#text-final textarea") == answer
    assert "8 NFE" in page.inner_text("#text-status")


def test_image_unmasks_step_by_step_and_ends_with_the_pipeline_image(served, page, shots):
    _, _, pipe = served
    page.get_by_role("tab", name="Images").click()
    caption, steps, seed, scale = "a handwritten three", 5, 3, 8
    _set(page, "#image-caption", caption)
    for selector, value in (("#image-steps-count", steps), ("#image-seed", seed), ("#image-scale", scale)):
        _set(page, selector, value)
    page.evaluate(RECORD, ["#image-live", "__live"])
    page.click("#image-run")
    page.wait_for_function("document.querySelector('#image-status').innerText.includes('done')")
    page.wait_for_selector("#image-final img")
    page.screenshot(path=str(shots / "image.png"), full_page=True)

    live_sources = {src for state in page.evaluate("window.__live") for src in _img_sources(state)}
    assert len(live_sources) >= 3  # several unmasking steps were drawn
    assert page.locator("#image-gallery img").count() >= steps

    source = page.locator("#image-final img").get_attribute("src")
    shown = Image.open(io.BytesIO(page.request.get(source).body())).convert("RGB")
    expected = pipe(prompt=[caption], num_inference_steps=steps, guidance_scale=1.0,
                    generator=torch.Generator().manual_seed(seed)).images[0]
    assert shown.size == (8 * scale, 8 * scale)
    assert np.array_equal(np.asarray(shown), np.asarray(to_viewable(expected, scale, invert=True).convert("RGB")))
    assert np.array_equal(np.asarray(shown)[::scale, ::scale], 255 - np.asarray(expected))  # the pipeline's pixels


def _img_sources(html: str) -> list[str]:
    parts = html.split('src="')[1:]
    return [part.split('"', 1)[0] for part in parts]


def test_screenshots_were_written(shots):
    # runs last in the module: both pages were photographed
    for name in ("text.png", "image.png"):
        assert (shots / name).stat().st_size > 10_000
