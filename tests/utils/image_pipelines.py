"""Tiny image pipelines: random aMUSEd components (the shapes of diffusers' own AmusedPipeline tests) and a
class-conditional MaskedImagePipeline with our transformer and scheduler."""

import torch
from diffusers import AmusedScheduler, UVit2DModel, VQModel
from transformers import CLIPTextConfig, CLIPTextModelWithProjection

from hf_dlm import MaskedImageTransformer, MaskGITScheduler
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.pipelines import MaskedImagePipeline


def _vqvae(codebook=8, latent_channels=8):
    torch.manual_seed(0)
    return VQModel(act_fn="silu", block_out_channels=[8], down_block_types=["DownEncoderBlock2D"], in_channels=3,
                   latent_channels=latent_channels, layers_per_block=1, norm_num_groups=8, num_vq_embeddings=codebook,
                   out_channels=3, sample_size=8, up_block_types=["UpDecoderBlock2D"], mid_block_add_attention=False,
                   lookup_from_codebook=True)


def amused_components():
    """Tiny random aMUSEd parts (the shapes of diffusers' own AmusedPipeline tests); an in-process tokenizer."""
    torch.manual_seed(0)
    transformer = UVit2DModel(hidden_size=8, use_bias=False, hidden_dropout=0.0, cond_embed_dim=8,
                              micro_cond_encode_dim=2, micro_cond_embed_dim=10, encoder_hidden_size=8, vocab_size=32,
                              codebook_size=8, in_channels=8, block_out_channels=8, num_res_blocks=1, downsample=True,
                              upsample=True, block_num_heads=1, num_hidden_layers=1, num_attention_heads=1,
                              attention_dropout=0.0, intermediate_size=8, layer_norm_eps=1e-12,
                              ln_elementwise_affine=True)
    torch.manual_seed(0)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=8, intermediate_size=37, layer_norm_eps=1e-05,
        num_attention_heads=4, num_hidden_layers=5, pad_token_id=1, vocab_size=1000, projection_dim=8)).eval()
    tokenizer = OracleLanguage().tokenizer(model_max_length=8)
    return dict(transformer=transformer.eval(), scheduler=AmusedScheduler(mask_token_id=31), vqvae=_vqvae().eval(),
                text_encoder=text_encoder, tokenizer=tokenizer)


def class_pipeline():
    torch.manual_seed(0)
    transformer = MaskedImageTransformer(codebook_size=8, sample_size=4, hidden_size=32, num_layers=1,
                                         num_attention_heads=2, num_classes=10).eval()
    pipe = MaskedImagePipeline(vqvae=_vqvae().eval(), transformer=transformer,
                               scheduler=MaskGITScheduler(mask_token_id=8, masking_schedule="arccos"))
    pipe.set_progress_bar_config(disable=True)
    return pipe
