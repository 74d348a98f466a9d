"""Hashed N-gram embeddings: hashing, the masking rules, the reveal-locality of ids, the decoding cache, the LLaDA
config option (save/load, off = plain model), the parameter budget and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from tests.utils.models import tiny_llada_config
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as hf_logging

from hf_dlm import LLaDAModelLM
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.modules.ngram import (NgramEmbedding, NgramEmbeddingConfig, NgramIdCache, affected_pairs, hash_ngrams,
                                  ngram_parameter_budget, polynomial_powers)
from hf_dlm.modules.ngram.configuration import choose_table_sizes, distance_to_vocab_multiple

MASK, PAD, EOS, BOS = 95, 94, 93, 92


def make_layer(max_n: int = 3, num_tables: int = 2, ignored=(), **kwargs) -> NgramEmbedding:
    config = NgramEmbeddingConfig(max_n=max_n, num_tables=num_tables, ignored_token_ids=list(ignored),
                                  embedding_dim=8, **kwargs).resolve(96, 16)
    torch.manual_seed(0)
    layer = NgramEmbedding(config, 16, blocked_token_ids=[MASK, PAD], eos_token_ids=[EOS])
    for table in layer.tables:  # nn.Embedding's own init leaves the padding row at zero
        assert torch.equal(table.weight[0], torch.zeros(8))
    return layer


def pair_collision_rate(ids: torch.LongTensor) -> float:
    """Fraction of pairs of distinct items that share a bucket (uniform hashing: 1/M)."""
    counts = torch.bincount(ids).double()
    k = len(ids)
    return float((counts * (counts - 1)).sum() / (k * (k - 1)))


# ----------------------------------------------------------------------------------------------------- hashing


def test_polynomial_hash_matches_hand_computation_and_never_overflows():
    # (3·10² + 5·10 + 7) mod 13 = 357 mod 13 = 6
    assert hash_ngrams(torch.tensor([[3, 5, 7]]), base=10, table_size=13).tolist() == [6]
    assert polynomial_powers(10, 3, 13) == [100 % 13, 10, 1]
    # LLaDA's vocabulary as base, order 5, the largest allowed table: int64 products stay exact
    base, size = 126464, 2**31 - 1
    windows = torch.randint(0, base, (64, 5), generator=torch.Generator().manual_seed(0))
    expected = [sum(int(w) * base ** (4 - j) for j, w in enumerate(row)) % size for row in windows.tolist()]
    assert hash_ngrams(windows, base, size).tolist() == expected


def test_ids_in_range_deterministic_and_equal_for_equal_ngrams():
    layer = make_layer(max_n=4, num_tables=2)
    x = torch.randint(0, 90, (3, 40), generator=torch.Generator().manual_seed(1))
    x[1, 20:24] = x[0, 5:9]  # the same 4-gram in another row at another position
    ids = layer.hashed_ids(x)
    assert ids.shape == (3, 40, 3, 2)
    for o, order in enumerate(layer.orders):
        for k, size in enumerate(layer.config.sizes_of_order(order)):
            table_ids = ids[:, :, o, k]
            assert int(table_ids.min()) >= 0 and int(table_ids.max()) <= size  # row 0 + ``size`` hashed rows
            assert bool((table_ids[:, order - 1:] >= 1).all())  # every complete window of plain tokens has an id
            assert bool((table_ids[:, :order - 1] == 0).all())  # windows starting before the sequence have none
    assert torch.equal(ids, layer.hashed_ids(x.clone()))
    assert torch.equal(ids[1, 23], ids[0, 8])  # all orders ≤ 4 end on the shared 4-gram
    assert torch.equal(ids[1, 22, :2], ids[0, 7, :2])


def test_table_sizes_are_distinct_primes_clearly_off_vocabulary_multiples():
    for vocab, ratio in ((96, 1.0), (261, 2.0), (126464, 0.5), (50, 4.0)):
        sizes = choose_table_sizes(vocab, ratio, 6)
        assert len(set(sizes)) == 6 and min(sizes) >= round(ratio * vocab)
        assert all(distance_to_vocab_multiple(s, vocab) >= vocab // 10 for s in sizes)
        assert all(all(s % d for d in range(2, int(math.isqrt(s)) + 1)) for s in sizes)
    logger = hf_logging.get_logger("hf_dlm.modules.ngram.configuration")
    with CaptureLogger(logger) as captured:
        NgramEmbeddingConfig(max_n=2, num_tables=1, table_sizes=[192]).resolve(96, 16)
    assert "multiple of the hash base" in captured.out


def test_collisions_follow_uniform_hashing_and_vocab_multiples_collide_more():
    vocab = 261
    oracle = OracleLanguage(seed=0)
    text = oracle.sample(300, 64, seed=3)
    for order in (2, 3):
        natural = torch.unique(text.unfold(1, order, 1).reshape(-1, order), dim=0)
        random = torch.unique(torch.randint(0, vocab, (len(natural), order),
                                            generator=torch.Generator().manual_seed(order)), dim=0)
        prime = choose_table_sizes(vocab, 4.0, 1)[0]
        multiple = 4 * vocab
        # prime sizes: the collision rate is the uniform-hashing 1/M on random and on natural N-grams
        for grams in (random, natural):
            assert pair_collision_rate(hash_ngrams(grams, vocab, prime)) * prime == pytest.approx(1.0, abs=0.1)
        # a multiple of V keeps only (earlier token mod 4): natural N-grams, which share suffixes, collide 2–4× more
        assert pair_collision_rate(hash_ngrams(random, vocab, multiple)) * multiple == pytest.approx(1.0, abs=0.1)
        assert pair_collision_rate(hash_ngrams(natural, vocab, multiple)) * multiple > 1.8


# ------------------------------------------------------------------------------------------ masking rules


def test_masks_padding_ignored_ids_and_eos_follow_the_rule_by_hand():
    layer = make_layer(max_n=3, num_tables=1, ignored=[BOS])
    #         0   1   2     3   4   5    6   7   8    9   10
    x = [[10, 11, MASK, 12, 13, EOS, 14, 15, PAD, BOS, 16]]
    ids = layer.hashed_ids(torch.tensor(x))[0, :, :, 0]
    has_bigram = [i for i in range(11) if ids[i, 0] > 0]
    has_trigram = [i for i in range(11) if ids[i, 1] > 0]
    assert has_bigram == [1, 4, 5, 7]  # (13, EOS) may end on EOS; (EOS, 14) would cross it
    assert has_trigram == [5]  # (12, 13, EOS)
    # attention_mask 0 blocks like the pad id
    attention = torch.ones(1, 11, dtype=torch.long)
    attention[0, 0] = 0
    ids_masked = layer.hashed_ids(torch.tensor(x), attention)[0, :, :, 0]
    assert [i for i in range(11) if ids_masked[i, 0] > 0] == [4, 5, 7]


def reference_embedding(layer: NgramEmbedding, x: torch.LongTensor, token_embeds: torch.Tensor) -> torch.Tensor:
    """The layer's equation written out position by position, skipping N-grams without an id."""
    ids = layer.hashed_ids(x)
    out = torch.empty_like(token_embeds)
    for b in range(x.shape[0]):
        for i in range(x.shape[1]):
            terms = [token_embeds[b, i]]
            for t, (table, projection) in enumerate(zip(layer.tables, layer.projections)):
                row = int(ids[b, i, t // layer.config.num_tables, t % layer.config.num_tables])
                if row > 0:
                    terms.append(projection(table.weight[row]))
            joined = torch.stack(terms).sum(0)
            if layer.config.combine == "mean":
                joined = joined / len(terms)
            out[b, i] = joined * math.sqrt(16) if layer.config.amplification == "sqrt_d" else joined
    return out


@pytest.mark.parametrize("combine", ["mean", "sum"])
def test_ngrams_without_id_contribute_exactly_zero(combine):
    layer = make_layer(max_n=3, num_tables=2, combine=combine)
    x = torch.tensor([[10, 11, MASK, 12, 13, EOS, 14, 15, PAD, MASK, 16, 17]])
    token_embeds = torch.randn(1, 12, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = layer(x, token_embeds)
        torch.testing.assert_close(out, reference_embedding(layer, x, token_embeds))
        # a position whose windows all lack an id is the amplified token embedding alone
        torch.testing.assert_close(out[0, 2], token_embeds[0, 2] * 4.0, rtol=0, atol=0)
        # garbage in the reserved rows changes nothing: they are never read into the sum
        for table in layer.tables:
            table.weight[0] = 1e3
        assert torch.equal(layer(x, token_embeds), out)


def test_amplification_options():
    token_embeds = torch.randn(2, 10, 16, generator=torch.Generator().manual_seed(0))
    x = torch.randint(0, 90, (2, 10), generator=torch.Generator().manual_seed(1))
    plain = make_layer(amplification="none")
    scaled = make_layer(amplification="sqrt_d")
    normed = make_layer(amplification="layernorm")
    with torch.no_grad():
        torch.testing.assert_close(scaled(x, token_embeds), plain(x, token_embeds) * 4.0)
        out = normed(x, token_embeds)
    torch.testing.assert_close(out.mean(-1), torch.zeros(2, 10), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(2, 10), atol=1e-3, rtol=0)


# ----------------------------------------------------------------------------------- reveals and the cache


@pytest.mark.parametrize("max_n", [2, 3, 4])
def test_revealing_one_token_changes_only_the_affected_pairs(max_n):
    layer = make_layer(max_n=max_n, num_tables=2)
    gen = torch.Generator().manual_seed(max_n)
    x = torch.randint(0, 90, (1, 30), generator=gen)
    x[torch.rand(1, 30, generator=gen) < 0.5] = MASK
    before = layer.hashed_ids(x)
    for p in (x[0] == MASK).nonzero().flatten().tolist():
        revealed = x.clone()
        revealed[0, p] = 7
        changed = (layer.hashed_ids(revealed) != before).any(-1)[0]  # (positions, orders)
        window = affected_pairs(revealed != x, layer.orders)[0]
        assert not bool((changed & ~window).any())  # nothing outside [p, p+n−1] for each order n
        assert int(changed.sum()) <= max_n * (max_n + 1) // 2 - 1
        others = changed.clone()
        others[p] = False
        assert int(others.sum()) <= max_n * (max_n - 1) // 2
        if 0 < p < 30 - max_n:  # an interior reveal's window holds exactly N(N+1)/2 − 1 pairs
            assert int(window.sum()) == max_n * (max_n + 1) // 2 - 1


def test_cache_updates_equal_full_recomputation():
    layer = make_layer(max_n=4, num_tables=2)
    gen = torch.Generator().manual_seed(0)
    target = torch.randint(0, 90, (2, 24), generator=gen)
    target[0, 10] = EOS
    x = torch.full_like(target, MASK)
    attention = torch.ones_like(target)
    cache = NgramIdCache()
    order = torch.randperm(24, generator=gen).tolist()
    previous = None
    for step in range(0, 24, 3):
        x[:, order[step:step + 3]] = target[:, order[step:step + 3]]
        if step == 12:
            attention[1, :2] = 0  # a padding change is a change too
        cached = layer.hashed_ids(x, attention, cache)
        assert torch.equal(cached, layer.hashed_ids(x, attention))
        if previous is not None:  # exactly the windows over a revealed token or a newly padded real token
            blocked_now, blocked_before = layer.token_maps(x, attention)[0], layer.token_maps(*previous)[0]
            changed = (x != previous[0]) | (blocked_now != blocked_before)
            assert torch.equal(cache.last_recomputed, affected_pairs(changed, layer.orders))
            assert int(cache.last_recomputed.sum()) < cache.last_recomputed.numel() // 2
        previous = (x.clone(), attention.clone())
    assert cache.full_computations == 1 and cache.incremental_updates == 7
    # a new shape starts over
    layer.hashed_ids(x[:, :10], None, cache)
    assert cache.full_computations == 2


@pytest.mark.parametrize("settings", [dict(), dict(cfg_scale=1.0), dict(remasking="random", block_length=8)])
def test_cached_decoding_equals_uncached_decoding(settings, monkeypatch):
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(ngram_embedding={"max_n": 3, "num_tables": 2})).eval()
    caches = []
    original = NgramIdCache.get_ids

    def spy(self, *args, **kwargs):
        caches.append(self)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(NgramIdCache, "get_ids", spy)
    prompt = torch.randint(0, 90, (2, 5), generator=torch.Generator().manual_seed(3))
    common = dict(max_new_tokens=16, steps=8, temperature=0.7, **settings)
    cached = model.generate(prompt, generator=torch.Generator().manual_seed(5), use_cache=True, **common)
    assert caches and caches[0].full_computations == 1 and caches[0].incremental_updates == len(caches) - 1
    calls = len(caches)
    uncached = model.generate(prompt, generator=torch.Generator().manual_seed(5), use_cache=False, **common)
    assert len(caches) == calls  # no cache without use_cache
    assert torch.equal(cached, uncached)


# ---------------------------------------------------------------------------------------- the model option


def test_save_load_gives_identical_logits_and_settings(tmp_path):
    torch.manual_seed(0)
    config = tiny_llada_config(ngram_embedding={"max_n": 4, "num_tables": 2, "amplification": "layernorm",
                                                "ignored_token_ids": [BOS], "table_size_ratio": 0.7})
    model = LLaDAModelLM(config).eval()
    with torch.no_grad():  # a trained-looking reserved-free table: make sure the N-gram rows really matter
        for table in model.model.transformer.ngram_embed.tables:
            table.weight[1:].normal_(0, 1.0)
    x = torch.randint(0, 90, (2, 20), generator=torch.Generator().manual_seed(1))
    x[0, 3] = MASK
    model.save_pretrained(tmp_path)
    reloaded = LLaDAModelLM.from_pretrained(tmp_path).eval()
    assert reloaded.config.ngram_embedding == model.config.ngram_embedding
    assert reloaded.config.ngram_embedding["table_sizes"] == config.ngram_embedding["table_sizes"]
    with torch.no_grad():
        assert torch.equal(model(input_ids=x).logits, reloaded(input_ids=x).logits)
    # the N-gram part changes the logits: it is not a no-op
    plain = LLaDAModelLM(tiny_llada_config()).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        assert not torch.allclose(plain(input_ids=x).logits, model(input_ids=x).logits)


def test_option_off_is_exactly_the_plain_model():
    torch.manual_seed(0)
    plain = LLaDAModelLM(tiny_llada_config()).eval()
    assert plain.config.ngram_embedding is None
    assert not any("ngram" in key for key in plain.state_dict())
    torch.manual_seed(0)
    off = LLaDAModelLM(tiny_llada_config(ngram_embedding=None)).eval()
    x = torch.randint(0, 90, (2, 16))
    with torch.no_grad():
        assert torch.equal(plain(input_ids=x).logits, off(input_ids=x).logits)
    # with zero projections, "sum" and no amplification, the N-gram model is the plain model
    with_ngram = LLaDAModelLM(tiny_llada_config(ngram_embedding={"combine": "sum", "amplification": "none"})).eval()
    missing, unexpected = with_ngram.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and all("ngram_embed" in key for key in missing)
    with torch.no_grad():
        for projection in with_ngram.model.transformer.ngram_embed.projections:
            projection.weight.zero_()
        assert torch.equal(plain(input_ids=x).logits, with_ngram(input_ids=x).logits)


def test_gradients_reach_used_rows_but_never_the_reserved_row():
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(ngram_embedding={"max_n": 2, "num_tables": 1}))
    x = torch.randint(0, 90, (2, 12))
    x[:, ::3] = MASK
    model(input_ids=x).logits.logsumexp(-1).sum().backward()
    layer = model.model.transformer.ngram_embed
    used = layer.hashed_ids(x)[..., 0, 0].unique()
    grad = layer.tables[0].weight.grad
    assert torch.equal(grad[0], torch.zeros_like(grad[0]))
    assert all(bool(grad[row].abs().sum() > 0) for row in used.tolist() if row > 0)


def test_parameter_budget_by_hand_and_warning_past_half():
    torch.manual_seed(0)
    model = LLaDAModelLM(tiny_llada_config(ngram_embedding={"max_n": 2, "num_tables": 2, "embedding_dim": 8}))
    sizes = model.config.ngram_embedding["table_sizes"]
    expected = sum((size + 1) * 8 + 8 * 64 for size in sizes)  # table rows + projection to d_model = 64
    budget = ngram_parameter_budget(model)
    assert budget["ngram"] == expected
    assert budget["total"] == sum(p.numel() for p in model.parameters())
    logger = hf_logging.get_logger("hf_dlm.modules.ngram.embedding")
    with CaptureLogger(logger) as captured:
        big = LLaDAModelLM(tiny_llada_config(ngram_embedding={"max_n": 4, "num_tables": 2, "table_size_ratio": 8}))
    assert ngram_parameter_budget(big)["fraction"] > 0.5
    assert "past about 50%" in captured.out


@pytest.mark.parametrize("settings, message", [
    (dict(max_n=1), "`max_n`"),
    (dict(num_tables=0), "`num_tables`"),
    (dict(max_n=2, num_tables=1, table_sizes=[1]), "table size"),
    (dict(max_n=2, num_tables=2, table_sizes=[101, 101]), "distinct sizes"),
    (dict(max_n=2, num_tables=1, table_sizes=[101, 103]), "`table_sizes`"),
    (dict(table_size_ratio=0), "`table_size_ratio`"),
    (dict(amplification="rmsnorm"), "`amplification`"),
    (dict(combine="max"), "`combine`"),
    (dict(order=3), "unknown `ngram_embedding` settings"),
])
def test_bad_settings_raise_clear_errors(settings, message):
    with pytest.raises(ValueError, match=message):
        tiny_llada_config(ngram_embedding=settings)


def test_bad_ignored_id_and_unresolved_layer():
    with pytest.raises(ValueError, match="ignored_token_ids"):
        tiny_llada_config(ngram_embedding={"ignored_token_ids": [1000]})
    with pytest.raises(ValueError, match="resolved"):
        NgramEmbedding(NgramEmbeddingConfig(), 16, [MASK], [EOS])
    with pytest.raises(TypeError, match="ngram_embedding"):
        tiny_llada_config(ngram_embedding=3)


def test_ngram_ids_match_a_pure_python_reference():
    """Every id of a random canvas (masks, pads, EOS) against the rule and the hash written with Python ints."""
    layer = make_layer(max_n=4, num_tables=2, ignored=[BOS])
    gen = torch.Generator().manual_seed(7)
    x = torch.randint(0, 90, (2, 30), generator=gen)
    x[0, [4, 17]], x[1, [9, 25]] = EOS, EOS
    x[0, 11], x[1, 2], x[1, 20] = MASK, PAD, BOS
    ids = layer.hashed_ids(x)
    assert int((ids > 0).sum()) < ids.numel() - 2 * 6 * 2  # some windows have no id, beyond the sequence starts
    blocked_ids, base = {MASK, PAD, BOS}, layer.config.hash_base
    for b, row in enumerate(x.tolist()):
        for i in range(len(row)):
            for o, order in enumerate(layer.orders):
                window = row[i - order + 1:i + 1] if i >= order - 1 else None
                valid = window is not None and not blocked_ids & set(window) and EOS not in window[:-1]
                for k, size in enumerate(layer.config.sizes_of_order(order)):
                    expected = 1 + sum(t * base ** (order - 1 - j) for j, t in enumerate(window)) % size if valid else 0
                    assert int(ids[b, i, o, k]) == expected, (b, i, order, k)
