"""p_init of Di[M]O (Sec. 4.3): partly masked random sequences and embedding noise."""

import pytest
import torch

from hf_dlm.generation.initial_state import DiMOInitialState, embedding_noise


def test_sample_masks_exactly_round_length_times_ratio_and_draws_allowed_tokens():
    state = DiMOInitialState(r_init=0.6, vocab_size=12, excluded_token_ids=[0, 11])
    x = state.sample(50, 16, mask_token_id=10, generator=torch.Generator().manual_seed(0))
    assert x.shape == (50, 16)
    assert torch.all((x == 10).sum(1) == round(16 * 0.6))
    others = x[x != 10]
    assert set(others.unique().tolist()) == set(range(1, 10))  # uniform over the allowed tokens: all appear


def test_ratio_range_is_drawn_per_batch_within_bounds():
    state = DiMOInitialState(r_init=0.2, r_init_max=0.8, vocab_size=8)
    gen = torch.Generator().manual_seed(0)
    ratios = [int((state.sample(1, 100, mask_token_id=8, generator=gen) == 8).sum()) / 100 for _ in range(200)]
    assert min(ratios) >= 0.2 and max(ratios) <= 0.8
    assert max(ratios) - min(ratios) > 0.4


def test_same_seed_same_state_and_dict_round_trip():
    state = DiMOInitialState(r_init=0.5, embedding_noise_std=0.1, vocab_size=20, excluded_token_ids=[3, 1])
    a = state.sample(4, 9, 19, generator=torch.Generator().manual_seed(5))
    b = DiMOInitialState.from_dict(state.to_dict()).sample(4, 9, 19, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert state.to_dict()["excluded_token_ids"] == [1, 3]


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_r_init_outside_unit_interval_is_rejected(bad):
    with pytest.raises(ValueError, match=r"`r_init` must lie in \[0, 1\], got " + str(bad)):
        DiMOInitialState(r_init=bad)


def test_other_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="r_init_max"):
        DiMOInitialState(r_init=0.5, r_init_max=0.4)
    with pytest.raises(ValueError, match="token_distribution"):
        DiMOInitialState(token_distribution="zipf")
    with pytest.raises(ValueError, match="unknown DiMOInitialState fields"):
        DiMOInitialState.from_dict({"r_init": 0.5, "mask_ratio": 0.3})


def test_embedding_noise_touches_only_the_given_positions_and_is_removed(tiny_llada):
    ids = torch.randint(0, 90, (2, 6))
    positions = torch.zeros(2, 6, dtype=torch.bool)
    positions[:, 3:] = True
    embeddings = tiny_llada.get_input_embeddings()
    clean = embeddings(ids).detach()
    with embedding_noise(tiny_llada, 0.5, positions, torch.Generator().manual_seed(0)):
        noisy = embeddings(ids).detach()
    assert torch.equal(noisy[:, :3], clean[:, :3])
    assert (noisy[:, 3:] - clean[:, 3:]).std() == pytest.approx(0.5, rel=0.3)
    assert torch.equal(embeddings(ids).detach(), clean)  # hook removed
