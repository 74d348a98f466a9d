"""The usage snippets of model cards: code that runs after ``pip install hf-dlm`` (a test executes each)."""

from __future__ import annotations

from typing import Any


def text_usage(repo_id: str, kind: str, has_tokenizer: bool, prompt: str, model: Any) -> str:
    if kind == "distilled-generator":
        arguments = ""
        note = "# one denoiser call: the saved generation config has steps=1 and the Di[M]O initial state\n"
    elif kind == "logit-fm":
        arguments, note = ', max_new_tokens=32, scheme="randomized", num_steps=32', ""
    else:
        arguments, note = ", max_new_tokens=32, steps=32", ""
    lines = ["import hf_dlm  # registers the hf-dlm architectures (and the Quant-dLLM quantizer) with transformers"]
    if has_tokenizer:
        lines += ["from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
                  f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")',
                  f'inputs = tokenizer([{prompt!r}], return_tensors="pt")',
                  f"{note}output = model.generate(inputs.input_ids, attention_mask=inputs.attention_mask{arguments})",
                  "print(tokenizer.batch_decode(output, skip_special_tokens=True))"]
    else:
        start = getattr(model.config, "bos_token_id", None)
        start = 0 if start is None else int(start)
        lines = ["import torch", *lines, "from transformers import AutoModelForCausalLM", "",
                 f'model = AutoModelForCausalLM.from_pretrained("{repo_id}")',
                 f"input_ids = torch.tensor([[{start}]])  # a one-token prompt: this repository ships no tokenizer",
                 f"{note}output = model.generate(input_ids{arguments})", "print(output)"]
    return "\n".join(lines)


def image_usage(repo_id: str, kind: str, pipe: Any, prompt: str) -> str:
    cls = type(pipe).__name__
    lines = ["import torch", "",
             "import hf_dlm  # registers the hf-dlm pipeline components with diffusers",
             f"from hf_dlm import {cls}", "",
             f'pipe = {cls}.from_pretrained("{repo_id}")']
    generator = "generator=torch.Generator().manual_seed(0)"
    if cls == "AutoregressiveImagePipeline":
        call = f"pipe(prompt={prompt!r}, {generator})"
    else:
        classes = int(getattr(pipe.transformer.config, "num_classes", 0) or 0)
        condition = "class_labels=[0]" if classes else f"prompt={prompt!r}"
        steps = 1 if kind == "distilled-generator" else 12
        call = f"pipe({condition}, num_inference_steps={steps}, {generator})"
        if kind == "distilled-generator":
            lines.append("# one step: the transformer's config carries the Di[M]O initial state")
    lines += [f"image = {call}.images[0]", 'image.save("sample.png")']
    return "\n".join(lines)


__all__ = ["image_usage", "text_usage"]
