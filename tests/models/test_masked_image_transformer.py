"""MaskedImageTransformer: layouts, the denoiser contract, conditioning, save/load, gradient checkpointing."""

import pytest
import torch

from hf_dlm import MaskedImageTransformer, denoise, get_mask_token_id


def _class_model(**kw):
    torch.manual_seed(0)
    return MaskedImageTransformer(codebook_size=17, sample_size=8, hidden_size=32, num_layers=2,
                                  num_attention_heads=2, num_classes=10, **kw).eval()


def test_grid_and_flat_layouts_agree_with_the_contract():
    model = _class_model()
    grid = torch.randint(0, 18, (3, 8, 8))
    labels = torch.tensor([1, 2, 10])
    logits_grid = model(grid, class_labels=labels).sample
    assert logits_grid.shape == (3, 17, 8, 8)  # like UVit2DModel
    flat = denoise(model, grid.view(3, 64), class_labels=labels)
    assert flat.shape == (3, 64, 17)
    torch.testing.assert_close(flat, logits_grid.flatten(2).transpose(1, 2))
    assert get_mask_token_id(model) == 17


def test_conditioning_changes_the_output_and_is_checked():
    model = _class_model()
    grid = torch.full((2, 8, 8), 17)
    a = model(grid, class_labels=torch.tensor([3, 3])).sample
    b = model(grid, class_labels=torch.tensor([3, 4])).sample
    assert torch.equal(a[0], b[0]) and not torch.allclose(a[1], b[1])
    with pytest.raises(ValueError, match="class_labels"):
        model(grid)
    with pytest.raises(ValueError, match=r"\[0, 9\]"):
        model(grid, class_labels=torch.tensor([3, 11]))


def test_text_conditioning_with_cross_attention_and_mask_ratio():
    torch.manual_seed(0)
    model = MaskedImageTransformer(codebook_size=32, sample_size=4, hidden_size=32, num_layers=1,
                                   num_attention_heads=2, pooled_projection_dim=24, cross_attention_dim=16,
                                   use_mask_ratio=True).eval()
    ids = torch.randint(0, 33, (2, 4, 4))
    text, pooled = torch.randn(2, 5, 16), torch.randn(2, 24)
    out = model(ids, encoder_hidden_states=text, pooled_text_emb=pooled, mask_ratio=0.5).sample
    other = model(ids, encoder_hidden_states=text.flip(0), pooled_text_emb=pooled, mask_ratio=0.5).sample
    assert out.shape == (2, 32, 4, 4) and not torch.allclose(out, other)
    with pytest.raises(ValueError, match="pooled_text_emb"):
        model(ids, encoder_hidden_states=text, mask_ratio=0.5)


def test_save_load_round_trip_and_gradient_checkpointing(tmp_path):
    model = _class_model()
    model.save_pretrained(tmp_path)
    loaded = MaskedImageTransformer.from_pretrained(tmp_path).eval()
    ids, labels = torch.randint(0, 18, (2, 8, 8)), torch.tensor([0, 9])
    assert torch.equal(model(ids, class_labels=labels).sample, loaded(ids, class_labels=labels).sample)
    loaded.train()
    plain = loaded(ids, class_labels=labels).sample.sum()
    plain.backward()
    grads = [p.grad.clone() for p in loaded.parameters()]
    loaded.zero_grad()
    loaded.enable_gradient_checkpointing()
    loaded(ids, class_labels=labels).sample.sum().backward()
    for g, p in zip(grads, loaded.parameters()):
        torch.testing.assert_close(p.grad, g)


def test_too_many_tokens_raise():
    with pytest.raises(ValueError, match="positions"):
        _class_model()(torch.zeros(1, 9, 9, dtype=torch.long), class_labels=torch.tensor([0]))
