"""transformers.pipeline("text-to-image") from a pipeline object, a saved folder and an offline hub id; saved
pipelines reload in a fresh process after `import hf_dlm`."""

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import torch
from transformers import pipeline

from hf_dlm.pipelines import MaskedImagePipeline
from tests.utils.image_pipelines import amused_components, class_pipeline

SETTINGS = dict(height=4, width=4, num_inference_steps=3)


def _image(t2i, prompt="the a of", seed=0):
    return np.array(t2i(prompt, generator=torch.Generator().manual_seed(seed), **SETTINGS))


def test_object_and_folder(tmp_path):
    pipe = MaskedImagePipeline(**amused_components())
    pipe.set_progress_bar_config(disable=True)
    from_object = pipeline("text-to-image", model=pipe)
    pipe.save_pretrained(tmp_path)
    from_folder = pipeline("text-to-image", model=str(tmp_path))
    assert np.array_equal(_image(from_object), _image(from_folder))
    images = from_folder(["the", "a of"], **SETTINGS)
    assert len(images) == 2 and images[0].size == (4, 4)
    several = from_folder("the", num_images_per_prompt=3, **SETTINGS)
    assert len(several) == 3


def test_class_conditional_through_the_task():
    t2i = pipeline("text-to-image", model=class_pipeline())
    image = t2i(7, num_inference_steps=2)
    assert image.size == (4, 4)


def test_offline_hub_id_in_a_fresh_process(tmp_path):
    pipe = MaskedImagePipeline(**amused_components())
    saved = tmp_path / "saved"
    pipe.save_pretrained(saved)
    expected = _image(pipeline("text-to-image", model=str(saved)))
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--hf-dlm-test--tiny-amused"
    shutil.copytree(saved, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    np.save(tmp_path / "expected.npy", expected)
    script = textwrap.dedent(f"""
        import numpy as np, torch
        import hf_dlm
        from transformers import pipeline
        from hf_dlm.pipelines import MaskedImagePipeline
        t2i = pipeline("text-to-image", model="hf-dlm-test/tiny-amused")
        image = np.array(t2i("the a of", generator=torch.Generator().manual_seed(0), height=4, width=4,
                             num_inference_steps=3))
        assert np.array_equal(image, np.load({str(tmp_path / 'expected.npy')!r})), "hub-id images differ"
        reloaded = MaskedImagePipeline.from_pretrained({str(saved)!r})
        assert type(reloaded.scheduler).__name__ == "AmusedScheduler"
        print("ok")
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "PYTHONPATH": str(Path(__file__).parents[1])}
    result = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]


def test_our_components_reload_in_a_fresh_process(tmp_path):
    pipe = class_pipeline()
    pipe.save_pretrained(tmp_path)
    script = ("import hf_dlm\nfrom hf_dlm.pipelines import MaskedImagePipeline\n"
              f"p = MaskedImagePipeline.from_pretrained({str(tmp_path)!r})\n"
              "print(type(p.transformer).__name__, type(p.scheduler).__name__)")
    result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            capture_output=True, text=True, timeout=300)
    assert result.stdout.split() == ["MaskedImageTransformer", "MaskGITScheduler"], result.stderr[-3000:]
