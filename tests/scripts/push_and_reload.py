"""Run by tests/test_hub_push.py with HF_ENDPOINT pointing at the test Hub server (tests/utils/hub_server.py): push a
diffusion LM with its tokenizer, a Quant-dLLM checkpoint and an image pipeline with ``push_to_hub`` (one commit
each, card included), load each back by id from an empty cache and compare outputs. Prints "ok" when everything
matched."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[2]))
import hf_dlm  # noqa: E402,F401
from tests.utils.models import tiny_llada_config, tiny_quantized_llada  # noqa: E402
from huggingface_hub import ModelCard  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from hf_dlm import LLaDAModelLM  # noqa: E402
from hf_dlm.evaluation.oracle import OracleLanguage  # noqa: E402
from hf_dlm.pipelines import MaskedImagePipeline  # noqa: E402
from hf_dlm.recipes.digits import build_digits_pipeline  # noqa: E402

ids = torch.randint(0, 90, (2, 12), generator=torch.Generator().manual_seed(5))

# a diffusion LM with its tokenizer
tokenizer = OracleLanguage(num_words=91).tokenizer()
torch.manual_seed(0)
model = LLaDAModelLM(tiny_llada_config(vocab_size=len(tokenizer), embedding_size=len(tokenizer),
                                       mask_token_id=tokenizer.mask_token_id, pad_token_id=tokenizer.pad_token_id,
                                       eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)).eval()
model.push_to_hub("hf-dlm-test/tiny-llada", tokenizer=tokenizer)  # weights, configs, tokenizer, card: one commit
card = ModelCard.load("hf-dlm-test/tiny-llada")
assert card.data.library_name == "hf-dlm" and 'from_pretrained("hf-dlm-test/tiny-llada")' in card.content
loaded = AutoModelForCausalLM.from_pretrained("hf-dlm-test/tiny-llada").eval()
assert AutoTokenizer.from_pretrained("hf-dlm-test/tiny-llada").mask_token_id == tokenizer.mask_token_id
with torch.no_grad():
    assert torch.equal(loaded(ids).logits, model(ids).logits), "diffusion LM logits differ"
prompt = torch.tensor([[5, 6, 7]])
assert torch.equal(loaded.generate(prompt, max_new_tokens=8, steps=4, block_length=8),
                   model.generate(prompt, max_new_tokens=8, steps=4, block_length=8)), "generations differ"

# a Quant-dLLM checkpoint
quantized = tiny_quantized_llada()
quantized.push_to_hub("hf-dlm-test/tiny-llada-2bit")
reloaded = AutoModelForCausalLM.from_pretrained("hf-dlm-test/tiny-llada-2bit").eval()
assert type(reloaded.model.transformer.blocks[1].up_proj).__name__ == "QuantDLLMLinear"
with torch.no_grad():
    assert torch.equal(reloaded(ids).logits, quantized(ids).logits), "quantized logits differ"

# an image pipeline
pipe = build_digits_pipeline(hidden_size=32, num_layers=1, text_hidden_size=32)
pipe.set_progress_bar_config(disable=True)
pipe.push_to_hub("hf-dlm-test/digits")
pulled = MaskedImagePipeline.from_pretrained("hf-dlm-test/digits")
pulled.set_progress_bar_config(disable=True)


def images(p):
    return p(prompt=["a handwritten seven"], num_inference_steps=3, generator=torch.Generator().manual_seed(0),
             output_type="latent").images


assert torch.equal(images(pulled), images(pipe)), "pipeline images differ"
print("ok")
