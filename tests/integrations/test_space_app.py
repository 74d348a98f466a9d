"""The Gradio Space app's handlers without a browser: what each tab shows for tiny models built in-process, errors
as one line in the page, and where the app finds its models. The browser drives the same page in
test_space_app_browser.py."""

import html
import json

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("gradio", reason="the Space app needs gradio (the `dev` and `app` extras install it)")

from hf_dlm.evaluation.oracle import OracleLanguage  # noqa: E402
from hf_dlm.pipelines.images import to_viewable  # noqa: E402
from tests.utils.space_app import space_module, tiny_digits_pipeline, tiny_oracle_llada  # noqa: E402


@pytest.fixture(scope="module")
def space():
    return space_module()


@pytest.fixture(scope="module")
def app(space):
    teacher = tiny_oracle_llada(0)
    student = tiny_oracle_llada(1)
    return space.SpaceApp(space.AppSources(teacher=teacher, student=student, quantized="outputs/no-such-2bit",
                                           image=tiny_digits_pipeline()))


def test_text_tab_streams_every_pass_and_ends_with_generate(app):
    model, tok = app.store.text("teacher")
    frames = list(app.run_text("teacher", "the a of", 6, 6, 3, "low_confidence", 0, 1.0, 5, 0))
    assert len(frames) == 1 + 6 + 1  # the all-mask start, one frame per pass, the final canvas
    masked = [canvas.count('class="tok mask"') for canvas, *_ in frames[:-1]]
    assert masked == [6, 5, 4, 3, 2, 1, 0]  # one token per pass (6 steps for 6 tokens)
    assert all(canvas.count('class="tok new"') == 1 for canvas, *_ in frames[1:-1])
    canvas, status, text, history = frames[-1]
    ids = tok("the a of", return_tensors="pt")["input_ids"]
    expected = model.generate(ids, steps=6, max_new_tokens=6, block_length=3, remasking="low_confidence",
                              temperature=1.0, generator=torch.Generator().manual_seed(5))
    assert text == tok.decode(expected[0, 3:], skip_special_tokens=True).strip()
    score = float(OracleLanguage().conditional_log_prob(expected)[0, 3:].sum())
    assert f"{score:.2f} nats" in status and "6 NFE" in status
    assert history.count('class="frame"') == 7


def test_threshold_cache_and_errors_are_one_line_in_the_page(app, space):
    fast = list(app.run_text("teacher", "the a of", 6, 6, 3, "low_confidence", 0.5, 0.0, 0, 0))
    assert "NFE" in fast[-1][1]
    model, tok = app.store.text("teacher")
    ids = tok("the a of", return_tensors="pt")["input_ids"]
    for cache in space.CACHE_CHOICES[1:]:  # "none" and, where this hf-dlm has them, Fast-dLLM's caches
        *_, (_, status, text, _) = app.run_text("teacher", "the a of", 6, 6, 3, "low_confidence", 0, 0.0, 0, 0,
                                                cache)
        expected = model.generate(ids, steps=6, max_new_tokens=6, block_length=3, remasking="low_confidence",
                                  temperature=0.0, cache_implementation=None if cache == "none" else cache,
                                  generator=torch.Generator().manual_seed(0))
        assert text == tok.decode(expected[0, 3:], skip_special_tokens=True).strip(), (cache, status)
    *_, (_, status, _, _) = app.run_text("teacher", "the", 6, 6, 3, "low_confidence", 0, 0, 0, 0, "warp")
    assert "cache must be one of" in status
    for args, message in ((("teacher", "", 6, 6, 3, "low_confidence", 0, 0, 0, 0), "the prompt is empty"),
                          (("teacher", "the", 6, 6, 4, "low_confidence", 0, 0, 0, 0), "divisible by `block_length`"),
                          (("teacher", "the", 0, 6, 3, "low_confidence", 0, 0, 0, 0), "steps must be >= 1, got 0"),
                          (("teacher", "the", 6, 6, 3, "sideways", 0, 0, 0, 0), "remasking must be one of"),
                          (("teacher", "the", 6, 6, 3, "low_confidence", 2, 0, 0, 0), "threshold must lie in"),
                          (("quantized", "the", 6, 6, 3, "low_confidence", 0, 0, 0, 0), "does not exist")):
        *_, (canvas, status, text, history) = app.run_text(*args)
        status = html.unescape(status)
        assert message in status and "error-line" in status and "Traceback" not in status, (args, status)


def test_side_by_side_reports_each_model_or_why_not(app):
    table, status = app.compare("the a of", 4, 8, 3)
    assert "seed 3" in status
    assert table.count("<tr>") == 4  # header + teacher, student, 2-bit
    assert "teacher (N steps)</td><td>4</td><td>4</td>" in table
    assert "Di[M]O student (1 step)</td><td>1</td><td>1</td>" in table
    assert "folder &#x27;outputs/no-such-2bit&#x27; does not exist" in table
    model, tok = app.store.text("teacher")
    ids = tok("the a of", return_tensors="pt")["input_ids"]
    expected = model.generate(ids, steps=4, max_new_tokens=8, generator=torch.Generator().manual_seed(3))
    assert f"{float(OracleLanguage().conditional_log_prob(expected)[0, 3:].sum()):.2f}" in table
    assert "the prompt is empty" in app.compare(" ", 4, 8, 3)[1]


def test_image_tab_shows_each_step_and_the_pipeline_image(app):
    pipe = app.store.get("image")
    frames = list(app.run_image("a handwritten seven", 7, 4, 1.0, 2, 8))
    assert len(frames) == 4 + 1
    live, final, gallery, status = frames[-1]
    assert "done: 4 steps" in status and len(gallery) == 4
    expected = pipe(prompt=["a handwritten seven"], num_inference_steps=4, guidance_scale=1.0,
                    generator=torch.Generator().manual_seed(2)).images[0]
    final = Image.open(final)
    assert final.size == (64, 64)
    assert np.array_equal(np.asarray(final), np.asarray(to_viewable(expected, 8, invert=True)))
    blue = [int((np.asarray(Image.open(path)) == (96, 150, 255)).all(axis=2).sum()) for path, _ in gallery]
    assert blue[0] > blue[-1] == 0  # masked cells disappear as the steps unmask them
    *_, (_, _, _, error) = app.run_image(" ", 7, 4, 1.0, 2, 8)
    assert "the caption is empty" in error
    *_, (_, _, _, error) = app.run_image("a seven", 7, 4, 1.0, 2, 0)
    assert "scale must be between 1 and 64, got 0" in error


def test_sources_come_from_defaults_config_environment_and_overrides(space, tmp_path, monkeypatch):
    for variable in space.ENVIRONMENT.values():
        monkeypatch.delenv(variable, raising=False)
    assert space.AppSources.from_environment(tmp_path).teacher == "outputs/demo"
    (tmp_path / "space_config.json").write_text(json.dumps({"teacher": "org/teacher", "student": None}))
    monkeypatch.setenv("HF_DLM_IMAGE", "org/digits")
    sources = space.AppSources.from_environment(tmp_path, quantized="org/2bit")
    assert (sources.teacher, sources.student, sources.quantized, sources.image) == \
        ("org/teacher", None, "org/2bit", "org/digits")
    missing = space.SpaceApp(sources)
    *_, (_, status, _, _) = missing.run_text("student", "the", 6, 6, 3, "low_confidence", 0, 0, 0, 0)
    assert "no Di[M]O student (1 step) is configured" in status
    (tmp_path / "space_config.json").write_text(json.dumps({"teacher": "x", "other": 1}))
    with pytest.raises(ValueError, match="may only name"):
        space.AppSources.from_environment(tmp_path)


def test_nothing_is_loaded_when_the_page_is_built(space, monkeypatch):
    monkeypatch.setattr(space.ModelStore, "_load", lambda self, role: pytest.fail(f"{role} loaded at start"))
    demo = space.build_demo(space.AppSources(teacher="org/never-downloaded"))
    assert demo.hf_dlm_app.store._loaded == {}
