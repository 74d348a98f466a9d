"""Each family decodes as its authors' sampler does, token for token.

The references below are plain re-implementations, written here from the published algorithms: LLaDA's
``generate()`` (Nie et al., 2025, arXiv 2502.09992, Algorithms 4–5 as its ``generate.py``: blocks, even per-step
counts, float64 Gumbel-max, low-confidence or float32 ``random`` scores over the whole canvas) and Dream's
``_sample`` (Ye et al., 2025: time grid ``linspace(1, eps, steps + 1)``, per-step count ``int(M·(1 − s/t))`` from the
current masks, ``sample_tokens`` with temperature then top-p then top-k, ``origin`` over the masked positions). Both
drive the very same hf-dlm forward, so every difference would be decoding.
"""

import pytest
import torch
import torch.nn.functional as F

MASK = 95


# ----------------------------------------------------------------------------------------------------------- LLaDA
@torch.no_grad()
def llada_reference(model, prompt, attention_mask=None, steps=8, gen_length=8, block_length=8, temperature=0.0,
                    cfg_scale=0.0, remasking="low_confidence", mask_id=MASK):
    batch, plen = prompt.shape
    x = torch.full((batch, plen + gen_length), mask_id, dtype=torch.long)
    x[:, :plen] = prompt
    if attention_mask is not None:
        attention_mask = torch.cat([attention_mask, torch.ones(batch, gen_length, dtype=attention_mask.dtype)], -1)
    prompt_index = x != mask_id
    num_blocks = gen_length // block_length
    steps = steps // num_blocks
    for nb in range(num_blocks):
        lo, hi = plen + nb * block_length, plen + (nb + 1) * block_length
        mask_num = (x[:, lo:hi] == mask_id).sum(dim=1)
        schedule = torch.zeros(batch, steps, dtype=torch.long) + (mask_num // steps)[:, None]
        for j in range(batch):
            schedule[j, : int(mask_num[j] % steps)] += 1
        for i in range(steps):
            mask_index = x == mask_id
            if cfg_scale > 0:
                un_x = x.clone()
                un_x[prompt_index] = mask_id
                am = None if attention_mask is None else torch.cat([attention_mask, attention_mask])
                cond, un = model(torch.cat([x, un_x]), attention_mask=am).logits.chunk(2)
                logits = un + (cfg_scale + 1) * (cond - un)
            else:
                logits = model(x, attention_mask=attention_mask).logits
            if temperature > 0:
                noise = torch.rand_like(logits, dtype=torch.float64)
                noisy = logits.to(torch.float64).exp() / (-torch.log(noise)) ** temperature
            else:
                noisy = logits
            x0 = noisy.argmax(-1)
            if remasking == "random":
                x0_p = torch.rand((batch, x.shape[1]))
            else:
                p = F.softmax(logits, dim=-1)
                if remasking == "low_confidence":
                    x0_p = torch.gather(p, -1, x0[..., None]).squeeze(-1)
                elif remasking == "margin":
                    top2 = p.topk(2, dim=-1).values
                    x0_p = top2[..., 0] - top2[..., 1]
                else:  # entropy
                    x0_p = (p * torch.log(p.clamp_min(1e-30))).sum(-1)
            x0_p[:, hi:] = float("-inf")
            x0 = torch.where(mask_index, x0, x)
            confidence = torch.where(mask_index, x0_p, torch.tensor(float("-inf")))
            transfer = torch.zeros_like(x0, dtype=torch.bool)
            for j in range(batch):
                transfer[j, torch.topk(confidence[j], k=int(schedule[j, i])).indices] = True
            x[transfer] = x0[transfer]
    return x


def left_padded(prompts, pad=94):
    width = max(len(p) for p in prompts)
    batch = torch.full((len(prompts), width), pad)
    mask = torch.zeros(len(prompts), width, dtype=torch.long)
    for i, p in enumerate(prompts):
        batch[i, width - len(p):], mask[i, width - len(p):] = p, 1
    return batch, mask


@pytest.fixture
def proposing_llada(tiny_llada):
    """A tiny LLaDA that proposes the mask id at some positions (the case where hf-dlm's switches would differ)."""
    bias = torch.zeros(100)
    bias[MASK] = 2.5
    tiny_llada.model.transformer.ff_out.bias = torch.nn.Parameter(bias)
    return tiny_llada


LLADA_CASES = [  # (steps, gen_length, block_length, cfg)
    (8, 8, 8, 0.0), (12, 12, 4, 0.0), (6, 12, 4, 0.0), (8, 8, 4, 1.5), (16, 8, 8, 0.0)]


@pytest.mark.parametrize("remasking", ["low_confidence", "random", "margin", "entropy"])
@pytest.mark.parametrize("temperature", [0.0, 0.8])
@pytest.mark.parametrize("steps, gen_length, block_length, cfg", LLADA_CASES)
def test_llada_family_equals_llada_generate(proposing_llada, remasking, temperature, steps, gen_length,
                                            block_length, cfg):
    prompt = torch.randint(0, 90, (2, 5), generator=torch.Generator().manual_seed(steps + gen_length))
    settings = dict(steps=steps, gen_length=gen_length, block_length=block_length, temperature=temperature,
                    cfg_scale=cfg, remasking=remasking)
    torch.manual_seed(11)
    expected = llada_reference(proposing_llada, prompt.clone(), **settings)
    torch.manual_seed(11)
    got = proposing_llada.generate(prompt, max_new_tokens=gen_length, steps=steps, block_length=block_length,
                                   temperature=temperature, cfg_scale=cfg, remasking=remasking, stop_at_eos=False)
    assert torch.equal(got, expected)


@pytest.mark.parametrize("remasking, temperature", [("low_confidence", 0.0), ("random", 0.0),
                                                     ("low_confidence", 1.0), ("random", 0.7)])
def test_llada_left_padded_batch_equals_llada_generate(proposing_llada, remasking, temperature):
    gen = torch.Generator().manual_seed(3)
    batch, mask = left_padded([torch.randint(0, 90, (n,), generator=gen) for n in (3, 7, 5)])
    settings = dict(steps=12, gen_length=12, block_length=4, temperature=temperature, remasking=remasking)
    torch.manual_seed(5)
    expected = llada_reference(proposing_llada, batch.clone(), mask, **settings)
    torch.manual_seed(5)
    got = proposing_llada.generate(batch, attention_mask=mask, max_new_tokens=12, steps=12, block_length=4,
                                   temperature=temperature, remasking=remasking, stop_at_eos=False)
    assert torch.equal(got, expected)


def test_llada_bf16_scores_follow_the_logits_dtype(tiny_llada):
    """LLaDA soft-maxes the logits in their own dtype; bf16 scores tie often and ties must break the same way."""
    model = tiny_llada.to(torch.bfloat16)
    prompt = torch.randint(0, 90, (2, 4), generator=torch.Generator().manual_seed(1))
    expected = llada_reference(model, prompt.clone(), steps=6, gen_length=12, block_length=6)
    got = model.generate(prompt, max_new_tokens=12, steps=6, block_length=6, stop_at_eos=False)
    assert torch.equal(got, expected)


def test_block_noise_switch_samples_the_same_distribution(tiny_llada):
    """``block_noise`` changes the random stream, not the distribution: per-position marginals of 2,000 samples
    stay within the noise floor of the canvas-wide noise under two seeds."""
    n = 2000
    prompt = torch.randint(0, 90, (1, 3), generator=torch.Generator().manual_seed(0)).expand(n, 3)
    settings = dict(max_new_tokens=4, steps=2, temperature=1.0, stop_at_eos=False)

    def marginals(seed, **extra):
        seqs = tiny_llada.generate(prompt, generator=torch.Generator().manual_seed(seed), **settings, **extra)
        return torch.stack([torch.bincount(seqs[:, 3 + i], minlength=100).double() / n for i in range(4)])

    canvas_a, canvas_b, block = marginals(0), marginals(1), marginals(2, block_noise=True)
    floor = 0.5 * (canvas_a - canvas_b).abs().sum(-1)
    gap = 0.5 * (block - canvas_a).abs().sum(-1)
    assert (gap <= 1.5 * floor + 0.02).all(), (gap, floor)


# ----------------------------------------------------------------------------------------------------------- Dream
def _dream_filter(logits, top_p, top_k):
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True)
        cum = torch.cumsum(F.softmax(sorted_logits, dim=-1), dim=-1)
        remove = cum > top_p
        remove[..., 1:] = remove[..., :-1].clone()
        remove[..., 0] = False
        logits = logits.masked_fill(torch.zeros_like(remove).scatter(-1, order, remove), torch.finfo(logits.dtype).min)
    if top_k is not None:
        logits = logits.masked_fill(logits < torch.topk(logits, min(top_k, logits.size(-1)))[0][..., -1, None],
                                    torch.finfo(logits.dtype).min)
    return logits


def _dream_sample_tokens(logits, temperature, top_p, top_k, alg):
    if temperature > 0:
        logits = logits / temperature
    probs = torch.softmax(_dream_filter(logits, top_p, top_k), dim=-1)
    if temperature > 0:
        x0 = torch.distributions.Categorical(probs=probs).sample()
        confidence = torch.gather(probs, -1, x0.unsqueeze(-1)).squeeze(-1)
    else:
        confidence, x0 = probs.max(dim=-1)
    if alg == "topk_margin":
        sorted_probs = torch.sort(probs, dim=-1, descending=True).values
        confidence = sorted_probs[:, 0] - sorted_probs[:, 1]
    elif alg == "entropy":
        confidence = torch.sum(probs * torch.log(probs + 1e-10), dim=-1)
    return confidence, x0


@torch.no_grad()
def dream_reference(model, prompt, attention_mask=None, max_new_tokens=8, steps=8, alg="maskgit_plus",
                    temperature=0.0, top_p=None, top_k=None, alg_temp=None, eps=1e-3, mask_id=MASK):
    x = F.pad(prompt, (0, max_new_tokens), value=mask_id)
    if attention_mask is not None:
        attention_mask = F.pad(attention_mask, (0, max_new_tokens), value=1)
    timesteps = torch.linspace(1, eps, steps + 1)
    for i in range(steps):
        mask_index = x == mask_id
        logits = model(x, attention_mask=attention_mask).logits
        logits = torch.cat([logits[:, :1], logits[:, :-1]], dim=1)
        mask_logits = logits[mask_index]
        t, s = timesteps[i], timesteps[i + 1]
        if alg == "origin":
            p_transfer = 1 - s / t if i < steps - 1 else 1
            x0 = torch.zeros_like(x[mask_index]) + mask_id
            reveal = torch.rand(*x0.shape) < p_transfer
            _, x0[reveal] = _dream_sample_tokens(mask_logits[reveal], temperature, top_p, top_k, alg)
            x[mask_index] = x0.clone()
            continue
        confidence, x0 = _dream_sample_tokens(mask_logits, temperature, top_p, top_k, alg)
        num_mask_token = mask_index.sum() / mask_index.shape[0]
        k = int(num_mask_token * (1 - s / t)) if i < steps - 1 else int(num_mask_token)
        full_confidence = torch.full_like(x, -torch.inf, dtype=logits.dtype)
        full_confidence[mask_index] = confidence
        if k > 0:
            if not alg_temp:
                transfer_index = torch.topk(full_confidence, k).indices
            else:
                transfer_index = torch.multinomial(F.softmax(full_confidence / alg_temp, dim=-1), num_samples=k)
            x_ = torch.zeros_like(x) + mask_id
            x_[mask_index] = x0.clone()
            rows = torch.arange(x.size(0)).unsqueeze(1).expand_as(transfer_index)
            x[rows, transfer_index] = x_[rows, transfer_index]
    return x


DREAM_ALGS = ["origin", "maskgit_plus", "topk_margin", "entropy"]


@pytest.mark.parametrize("alg", DREAM_ALGS)
@pytest.mark.parametrize("steps", [16, 8, 4])  # L, L/2, L/4
@pytest.mark.parametrize("padded", [False, True])
def test_dream_equals_dream_sample_at_temperature_zero(tiny_dream, alg, steps, padded):
    gen = torch.Generator().manual_seed(steps)
    if padded:
        prompt, mask = left_padded([torch.randint(0, 90, (n,), generator=gen) for n in (4, 2, 6)])
    else:
        prompt, mask = torch.randint(0, 90, (1, 5), generator=gen), None
    torch.manual_seed(2)
    expected = dream_reference(tiny_dream, prompt.clone(), mask, max_new_tokens=16, steps=steps, alg=alg)
    torch.manual_seed(2)
    got = tiny_dream.diffusion_generate(prompt, attention_mask=mask, max_new_tokens=16, steps=steps, alg=alg,
                                        stop_at_eos=False)
    assert torch.equal(got, expected)
    # Dream checkpoints decode with Dream's sampler by default, and `alg` is `remasking` under its own name
    assert tiny_dream.generation_config.sampler is None and type(tiny_dream).diffusion_sampler == "dream"


@pytest.mark.parametrize("alg, settings", [
    ("origin", dict(temperature=0.7)), ("maskgit_plus", dict(temperature=0.5, top_p=0.9)),
    ("topk_margin", dict(temperature=1.0, top_k=7)), ("entropy", dict(temperature=0.2, top_p=0.95, top_k=20)),
    ("maskgit_plus", dict(temperature=0.5, alg_temp=0.3))])
def test_dream_equals_dream_sample_with_seeds(tiny_dream, alg, settings):
    prompt, mask = left_padded([torch.randint(0, 90, (n,), generator=torch.Generator().manual_seed(n)) for n in (3, 5)])
    torch.manual_seed(9)
    expected = dream_reference(tiny_dream, prompt.clone(), mask, max_new_tokens=12, steps=6, alg=alg, **settings)
    torch.manual_seed(9)
    got = tiny_dream.diffusion_generate(prompt, attention_mask=mask, max_new_tokens=12, steps=6, alg=alg,
                                        stop_at_eos=False, **settings)
    assert torch.equal(got, expected)


def test_dream_marginals_at_temperature_match_without_aligned_draws(tiny_dream):
    """With an independent random stream (a generator), per-position marginals of 2,000 samples stay within the
    noise floor of two reference runs with different seeds."""
    n, length = 2000, 4
    prompt = torch.randint(0, 90, (1, 3), generator=torch.Generator().manual_seed(4)).expand(n, 3)
    settings = dict(max_new_tokens=length, steps=4, alg="entropy", temperature=0.8, top_p=0.95)

    def marginals(seqs):
        return torch.stack([torch.bincount(seqs[:, 3 + i], minlength=100).double() / n for i in range(length)])

    ref_a = marginals(dream_reference(tiny_dream, prompt.clone(), **settings))
    torch.manual_seed(1)
    ref_b = marginals(dream_reference(tiny_dream, prompt.clone(), **settings))
    ours = marginals(tiny_dream.diffusion_generate(prompt, generator=torch.Generator().manual_seed(2),
                                                   stop_at_eos=False, **settings))
    floor = 0.5 * (ref_a - ref_b).abs().sum(-1)
    gap = 0.5 * (ours - ref_a).abs().sum(-1)
    assert (gap <= 2.0 * floor + 0.02).all(), (gap, floor)


def test_dream_sampler_runs_on_llada_and_saves(tiny_llada, tmp_path):
    """The family is a setting: LLaDA decoded with Dream's schedule, and the choice survives save/reload."""
    prompt = torch.randint(0, 90, (1, 4))
    expected = dream_reference(lambda x, attention_mask=None: _aligned(tiny_llada, x, attention_mask), prompt.clone(),
                               max_new_tokens=8, steps=4, alg="entropy")
    got = tiny_llada.generate(prompt, max_new_tokens=8, steps=4, sampler="dream", alg="entropy", stop_at_eos=False)
    assert torch.equal(got, expected)
    tiny_llada.generation_config.sampler = "dream"
    tiny_llada.generation_config.remasking = "entropy"
    tiny_llada.save_pretrained(tmp_path)
    from hf_dlm import LLaDAModelLM

    reloaded = LLaDAModelLM.from_pretrained(tmp_path)
    assert reloaded.generation_config.sampler == "dream"
    assert torch.equal(reloaded.generate(prompt, max_new_tokens=8, steps=4, stop_at_eos=False), expected)


class _Shifted:
    def __init__(self, logits):
        self.logits = logits


def _aligned(model, x, attention_mask):
    """LLaDA's logits presented as Dream's raw (next-token) logits, so the Dream reference's shift re-aligns them."""
    logits = model(x, attention_mask=attention_mask).logits
    return _Shifted(torch.cat([logits[:, 1:], logits[:, -1:]], dim=1))


# -------------------------------------------------------------------------------------------------------- threshold
@pytest.mark.parametrize("sampler, remasking", [("llada", "low_confidence"), ("llada", "margin"),
                                                ("dream", "low_confidence"), ("dream", "entropy")])
def test_threshold_decoding_ends_when_the_model_proposes_only_the_mask(tiny_llada, sampler, remasking):
    bias = torch.zeros(100)
    bias[MASK] = 1000.0  # every proposal is the mask id
    tiny_llada.model.transformer.ff_out.bias = torch.nn.Parameter(bias)
    out = tiny_llada.generate(torch.randint(0, 90, (2, 3)), max_new_tokens=12, block_length=4, threshold=0.9,
                              sampler=sampler, remasking=remasking, return_dict_in_generate=True, stop_at_eos=False)
    assert out.nfe == 3 * 4  # at most block_length passes for each of the 3 blocks


def test_threshold_commits_top_one_when_nothing_passes(tiny_llada):
    out = tiny_llada.generate(torch.randint(0, 90, (1, 3)), max_new_tokens=8, threshold=1.01,
                              return_dict_in_generate=True, stop_at_eos=False, output_history=True)
    assert out.nfe == 8 and not (out.sequences == MASK).any()
    assert [int((h == MASK).sum()) for h in out.history] == list(range(7, -1, -1))


def test_dream_checkpoint_with_dreams_generation_config_decodes_as_dream(tiny_dream, tmp_path):
    """A checkpoint folder whose generation_config.json is written in Dream's own layout (``alg``, ``alg_temp``,
    ``eps``, ``steps``, ``max_length`` …) reloads into Dream's sampler with those settings."""
    import json

    from transformers import AutoModel

    tiny_dream.save_pretrained(tmp_path)
    dream_layout = {"alg": "entropy", "alg_temp": 0.0, "eps": 0.001, "steps": 8, "temperature": 0.0, "top_p": None,
                    "top_k": None, "max_length": 20, "max_new_tokens": None, "mask_token_id": MASK,
                    "pad_token_id": 94, "bos_token_id": 92, "eos_token_id": 93, "num_return_sequences": 1,
                    "return_dict_in_generate": False, "output_history": False, "generation_kwargs": {},
                    "_from_model_config": False, "transformers_version": "4.46.2"}
    (tmp_path / "generation_config.json").write_text(json.dumps(dream_layout))
    reloaded = AutoModel.from_pretrained(tmp_path)
    assert reloaded.generation_config.remasking == "entropy" and reloaded.generation_config.steps == 8
    prompt = torch.randint(0, 90, (1, 4), generator=torch.Generator().manual_seed(8))
    expected = dream_reference(tiny_dream, prompt.clone(), max_new_tokens=16, steps=8, alg="entropy")
    assert torch.equal(reloaded.generate(prompt, max_new_tokens=16, stop_at_eos=False), expected)
