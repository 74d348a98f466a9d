"""Tiny stand-ins for the artifacts the code blocks of README.md and docs/*.md load.

The documentation's blocks load what `make demo` leaves in `outputs/`: a word-level LLaDA on the oracle language
(`outputs/demo`) and the digits text-to-image pipeline (`outputs/demo-digits`). `prepare_outputs(folder)` writes
untrained, tiny versions of both with the same interface (tokenizer, saved generation settings, text-conditional
pipeline with its caption tokenizer), in a few seconds, using the public API only.
"""

from __future__ import annotations

from pathlib import Path

import torch

# the demo's sampler settings (32-word sequences after an 8-word prompt, blocks of 8)
DEMO_GENERATION = dict(max_new_tokens=24, steps=24, block_length=8, stop_at_eos=False, do_sample=True,
                       temperature=1.0)
CAPTION_WORDS = ("a", "the", "handwritten", "digit", "drawing", "of", "number", "written", "by", "hand", ",",
                 "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
                 *map(str, range(10)))


def save_demo_llada(path: str | Path) -> None:
    """A tiny LLaDA (d 32, 2 layers) with the oracle language's tokenizer and the demo's generation settings."""
    from hf_dlm import LLaDAConfig, LLaDAModelLM, MaskedDiffusionGenerationConfig
    from hf_dlm.evaluation import OracleLanguage

    tok = OracleLanguage().tokenizer()
    config = LLaDAConfig(vocab_size=len(tok), embedding_size=len(tok), d_model=32, n_layers=2, n_heads=4,
                         mlp_hidden_size=64, max_sequence_length=64, rope_theta=10000.0,
                         mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id,
                         eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    torch.manual_seed(0)
    model = LLaDAModelLM(config).eval()
    model.generation_config = MaskedDiffusionGenerationConfig(suppress_tokens=list(tok.all_special_ids),
                                                              **DEMO_GENERATION)
    model.save_pretrained(path)
    tok.save_pretrained(path)


def caption_tokenizer():
    """Word-level caption tokenizer (pads to 10, ends every caption with ``<eos>``, where CLIP pools)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"]
    vocab = {token: i for i, token in enumerate(specials + sorted(set(CAPTION_WORDS)))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    backend.post_processor = processors.TemplateProcessing(single="$A <eos>", special_tokens=[("<eos>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>",
                                   unk_token="<unk>", model_max_length=10)


def save_demo_digits(path: str | Path) -> None:
    """A tiny text-to-image MaskedImagePipeline shaped like the digits one: 8×8 images of 17 grey levels, a small
    CLIP text encoder, a MaskGIT scheduler (untrained: the images are noise, the interface is the demo's)."""
    from diffusers import VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    from hf_dlm import MaskedImagePipeline, MaskedImageTransformer, MaskGITScheduler

    tokenizer = caption_tokenizer()
    torch.manual_seed(0)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
        max_position_embeddings=10, projection_dim=16, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)).eval()
    transformer = MaskedImageTransformer(codebook_size=17, sample_size=8, hidden_size=32, num_layers=1,
                                         num_attention_heads=2, pooled_projection_dim=16,
                                         cross_attention_dim=16).eval()
    vqvae = VQModel(act_fn="silu", block_out_channels=[8], down_block_types=["DownEncoderBlock2D"], in_channels=3,
                    latent_channels=4, layers_per_block=1, norm_num_groups=4, num_vq_embeddings=17, out_channels=3,
                    sample_size=8, up_block_types=["UpDecoderBlock2D"], mid_block_add_attention=False,
                    lookup_from_codebook=True).eval()
    pipe = MaskedImagePipeline(vqvae=vqvae, transformer=transformer, tokenizer=tokenizer, text_encoder=text_encoder,
                               scheduler=MaskGITScheduler(mask_token_id=17, masking_schedule="cosine"))
    pipe.save_pretrained(path)


def prepare_outputs(folder: str | Path) -> Path:
    """Write ``outputs/demo`` and ``outputs/demo-digits`` under ``folder``; returns ``folder``."""
    folder = Path(folder)
    save_demo_llada(folder / "outputs" / "demo")
    save_demo_digits(folder / "outputs" / "demo-digits")
    return folder
