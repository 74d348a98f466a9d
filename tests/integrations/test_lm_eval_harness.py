"""The lm-evaluation-harness model ``hf-dlm``: the harness run offline on the shipped oracle tasks.

Likelihoods equal :func:`elbo_log_likelihood` for the same seed, agree with the exact likelihood of an exact denoiser
within Monte-Carlo error (where the plain ``hf`` backend is far off), ``is_greedy`` is LLaDA's greedy unmasking,
rolling windows cover a document once, generate_until honours ``max_gen_toks`` and ``until``, 2-bit and Dream
checkpoints evaluate, a Di[M]O student and a Logit-FM model refuse likelihood tasks by name.
"""

from __future__ import annotations

import math
import zlib
from pathlib import Path

import lm_eval
import pytest
import torch
from lm_eval.api.instance import Instance
from lm_eval.api.registry import get_model
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
from hf_dlm.recipes.oracle_denoiser import OracleDenoiser, OracleDenoiserConfig

from tests.utils.models import TINY_QUANT, tiny_dream_config, tiny_llada_config
from hf_dlm import DreamModel, LLaDAModelLM, LogitFMConfig, LogitFMModel, QuantDLLMConfig, QuantDLLMQuantizer
from hf_dlm.evaluation.likelihood import elbo_log_likelihood
from hf_dlm.evaluation.oracle import OracleLanguage
from hf_dlm.generation.initial_state import DiMOInitialState
from hf_dlm.integrations._lm_eval_requests import (cut_at_stop_strings, encode_pair, fit_context, parse_gen_kwargs,
                                                   rolling_windows)
from hf_dlm.integrations.lm_eval_harness import DiffusionLM, LikelihoodUnavailableError

TASKS = Path(__file__).parents[2] / "integrations" / "lm_eval" / "tasks"
SEED = 1234


@pytest.fixture(scope="module")
def tok():
    return OracleLanguage().tokenizer(model_max_length=64)


@pytest.fixture(scope="module")
def task_manager():
    return TaskManager(include_path=str(TASKS))


def oracle_llada(tok, **overrides) -> LLaDAModelLM:
    torch.manual_seed(0)
    config = tiny_llada_config(vocab_size=len(tok), embedding_size=len(tok), n_kv_heads=4,
                               mask_token_id=tok.mask_token_id, pad_token_id=tok.pad_token_id,
                               eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id, **overrides)
    return LLaDAModelLM(config).eval()


def oracle_dream(tok) -> DreamModel:
    torch.manual_seed(0)
    return DreamModel(tiny_dream_config(vocab_size=len(tok), mask_token_id=tok.mask_token_id,
                                        pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                                        bos_token_id=tok.bos_token_id)).eval()


def evaluate(lm, tasks, task_manager, limit):
    return lm_eval.simple_evaluate(model=lm, tasks=tasks, task_manager=task_manager, limit=limit, log_samples=True,
                                   verbosity="ERROR")


def harness(model, tok, **kwargs) -> DiffusionLM:
    settings = dict(mc_num=8, batch_size=4, show_progress=False, seed=SEED)
    settings.update(kwargs)
    return DiffusionLM(pretrained=model, tokenizer=tok, **settings)


def ids(tok, text: str) -> list[int]:
    return tok(text)["input_ids"]


def request_seed(context: list[int], seed: int = SEED) -> int:
    """The seed of a request, as DiffusionLM documents it: ``seed`` and the CRC-32 of the context's ids."""
    return (seed * 1_000_003 + zlib.crc32(",".join(map(str, context)).encode())) % 2**63


def elbo(model, context, target, mc_num=8, batch_size=4, seed=SEED) -> float:
    return float(elbo_log_likelihood(model, torch.tensor(context), torch.tensor(target), mc_samples=mc_num,
                                     batch_size=batch_size, generator=torch.Generator().manual_seed(
                                         request_seed(context, seed))).log_likelihood)


# ---------------------------------------------------------------------------------------------- likelihoods


def test_harness_loglikelihoods_equal_elbo_for_the_same_seed(tok, task_manager):
    model = oracle_llada(tok)
    results = evaluate(harness(model, tok, is_check_greedy=False), ["oracle_mc"], task_manager, limit=3)
    samples = results["samples"]["oracle_mc"]
    assert len(samples) == 3
    for sample in samples:
        context = ids(tok, sample["doc"]["context"])
        for choice, response in zip(sample["doc"]["choices"], sample["resps"]):
            score, greedy = response[0]
            assert score == pytest.approx(elbo(model, context, ids(tok, " " + choice)), abs=1e-9)
            assert greedy is False  # is_check_greedy=False reports False
    assert 0.0 <= results["results"]["oracle_mc"]["acc,none"] <= 1.0


def _llada_estimate(model, prefix, target, mc_num, batch_size, generator, mask_id):
    """LLaDA's Monte-Carlo estimator as its paper states it (eq. 6, Appendix B.6), written independently: stratified
    mask counts l, l random answer positions masked by a random permutation, loss weighted by L / l."""
    sequence = torch.tensor(prefix + target).repeat(batch_size, 1)
    length = len(target)
    losses = []
    for _ in range(mc_num // batch_size):
        k = int(torch.randint(1, length + 1, (), generator=generator))
        counts = torch.round(torch.linspace(float(k), k + (batch_size - 1) * (length / batch_size), batch_size))
        counts = ((counts.long() - 1) % length) + 1
        masked = torch.zeros_like(sequence, dtype=torch.bool)
        for row, count in enumerate(counts.tolist()):
            masked[row, len(prefix) + torch.randperm(length, generator=generator)[:count]] = True
        logits = model(sequence.masked_fill(masked, mask_id)).logits
        nll = torch.nn.functional.cross_entropy(logits[masked], sequence[masked], reduction="none")
        weights = (length / counts.float()).unsqueeze(1).expand_as(masked)[masked]
        losses.append(float((nll * weights).sum()) / batch_size)
    return -sum(losses) / len(losses)


@pytest.mark.slow
def test_multiple_choice_matches_the_exact_likelihood_within_monte_carlo_error_and_beats_the_plain_hf_backend(
        tok, task_manager):
    """An exact denoiser: its ELBO is the exact log-likelihood in expectation. The oracle ranks the answers of
    oracle_mc_ranked (the exact oracle scores 1.0)."""
    model = OracleDenoiser(OracleDenoiserConfig(mask_token_id=tok.mask_token_id, vocab_size=len(tok))).eval()
    mc_num, limit = 32, 10
    ours = evaluate(harness(model, tok, mc_num=mc_num, batch_size=32, is_check_greedy=False), ["oracle_mc_ranked"],
                    task_manager, limit)
    plain = evaluate(HFLM(pretrained=model, tokenizer=tok, backend="causal"), ["oracle_mc_ranked"], task_manager,
                     limit)
    accuracy = ours["results"]["oracle_mc_ranked"]["acc,none"]
    plain_accuracy = plain["results"]["oracle_mc_ranked"]["acc,none"]
    assert accuracy >= plain_accuracy + 0.3 and accuracy >= 0.8, (accuracy, plain_accuracy)

    generator = torch.Generator().manual_seed(99)
    independent_correct, close = 0, 0
    with torch.no_grad():
        for sample in ours["samples"]["oracle_mc_ranked"]:
            doc = sample["doc"]
            context = ids(tok, doc["context"])
            exact = torch.tensor(doc["oracle_log_probs"])
            scores = torch.tensor([r[0][0] for r in sample["resps"]])
            spread = []
            for choice in doc["choices"]:
                target = ids(tok, " " + choice)
                estimate = elbo_log_likelihood(model, torch.tensor(context), torch.tensor(target), mc_samples=mc_num,
                                               batch_size=32, generator=torch.Generator().manual_seed(7))
                spread.append(float(estimate.stderr))
            # the harness's scores lie within Monte-Carlo error of the exact conditional log-probabilities
            assert ((scores - exact).abs() <= 4 * torch.tensor(spread) + 1e-3).all(), (scores, exact, spread)
            independent = torch.tensor([_llada_estimate(model, context, ids(tok, " " + c), mc_num, 32, generator,
                                                        tok.mask_token_id) for c in doc["choices"]])
            assert ((independent - exact).abs() <= 4 * torch.tensor(spread) + 1e-3).all()
            independent_correct += int(independent.argmax()) == doc["oracle_gold"]
            top2 = exact.topk(2).values
            close += float(top2[0] - top2[1]) < 8 * max(spread)
    independent_accuracy = independent_correct / limit
    assert abs(accuracy - independent_accuracy) <= close / limit + 1e-9, (accuracy, independent_accuracy, close)


def _llada_suffix_greedy(model, prefix, target, mask_id):
    """LLaDA's greedy check written from its description: one pass per answer token, commit the argmax at the masked
    position of highest softmax probability."""
    sequence = torch.tensor([prefix + [mask_id] * len(target)])
    for _ in range(len(target)):
        masked = sequence == mask_id
        logits = model(sequence).logits[masked]
        tokens = logits.argmax(-1)
        confidence = logits.float().softmax(-1).max(-1).values
        best = int(confidence.argmax())
        sequence[masked.nonzero()[best][0], masked.nonzero()[best][1]] = tokens[best]
    return sequence[0, len(prefix):].tolist()


def test_is_greedy_is_llada_greedy_unmasking(tok):
    model = oracle_llada(tok)
    lm = harness(model, tok)
    context = ids(tok, "the a of")
    with torch.no_grad():
        greedy = _llada_suffix_greedy(model, context, [0, 0, 0], tok.mask_token_id)
    assert lm.greedy_unmask(context, 3).tolist() == greedy
    words = " " + " ".join(OracleLanguage().words[i] for i in greedy)
    other = " " + " ".join(OracleLanguage().words[(i + 1) % 256] for i in greedy)
    (_, is_greedy), (_, not_greedy) = lm.loglikelihood([Instance("loglikelihood", {}, ("the a of", words), 0),
                                                       Instance("loglikelihood", {}, ("the a of", other), 1)])
    assert is_greedy is True and not_greedy is False


def test_scores_are_deterministic_for_a_seed_and_move_with_it(tok):
    model = oracle_llada(tok)
    request = [Instance("loglikelihood", {}, ("the a of", " the a of in is was"), 0)]
    first = harness(model, tok, is_check_greedy=False).loglikelihood(request)
    again = harness(model, tok, is_check_greedy=False).loglikelihood(request)
    other = harness(model, tok, is_check_greedy=False, seed=5).loglikelihood(request)
    assert first == again and first != other
    other_question = harness(model, tok, is_check_greedy=False).loglikelihood(
        [Instance("loglikelihood", {}, ("the a in", " the a of in is was"), 0)])
    lm = harness(model, tok)
    assert lm.request_generator([1, 2]).initial_seed() != lm.request_generator([1, 3]).initial_seed()
    assert other_question != first


def test_rolling_loglikelihood_sums_the_elbo_of_windows_that_cover_the_document_once(tok):
    model = oracle_llada(tok)
    text = OracleLanguage().decode(OracleLanguage().sample(1, 20, seed=3))[0]
    tokens = tok(text, add_special_tokens=False)["input_ids"]
    windows = rolling_windows(tokens, tok.bos_token_id, max_length=8)
    assert [t for _, target in windows for t in target] == tokens
    assert all(len(context) + len(target) <= 8 for context, target in windows)
    assert windows[0][0] == [tok.bos_token_id] and all(len(context) >= 1 for context, _ in windows)
    assert len(windows[-1][0]) + len(windows[-1][1]) == 8  # the last window gets as much context as fits
    lm = harness(model, tok, max_length=8)
    (score,) = lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (text,), 0)])
    assert score == pytest.approx(sum(elbo(model, c, t) for c, t in windows), abs=1e-9)


def test_a_long_context_is_cut_on_the_left_and_logged(tok, caplog):
    model = oracle_llada(tok)
    lm = harness(model, tok, max_length=10, is_check_greedy=False)
    context = " ".join(["the"] * 12)
    with caplog.at_level("WARNING"):
        (score, _), = lm.loglikelihood([Instance("loglikelihood", {}, (context, " a of"), 0)])
    assert score == pytest.approx(elbo(model, ids(tok, context)[-8:], ids(tok, " a of")), abs=1e-9)
    assert "cut on the left" in caplog.text
    with pytest.raises(ValueError, match="exceeds `max_length`"):
        lm.loglikelihood([Instance("loglikelihood", {}, ("the", " a" * 11), 0)])


def test_non_finite_logits_are_refused_not_scored(tok):
    model = oracle_llada(tok)
    with torch.no_grad():
        model.model.transformer.ff_out.weight.fill_(float("nan"))
    lm = harness(model, tok, is_check_greedy=False)
    with pytest.raises(FloatingPointError, match="not finite"):
        lm.loglikelihood([Instance("loglikelihood", {}, ("the", " a of"), 0)])


# ---------------------------------------------------------------------------------------------- generation


def test_generate_until_honours_max_gen_toks_and_until(tok):
    model = oracle_llada(tok)
    lm = harness(model, tok, steps=4, block_length=4)
    calls = []
    original = model.generate

    def recording(*args, **kwargs):
        out = original(*args, **kwargs)
        calls.append((kwargs, out.shape[1] - args[0].shape[1]))
        return out

    model.generate = recording
    context = "the a of"
    (full,) = lm.generate_until([Instance("generate_until", {}, (context, {"max_gen_toks": 8, "until": []}), 0)])
    assert calls[-1][1] == 8 and calls[-1][0]["max_new_tokens"] == 8
    assert calls[-1][0]["steps"] == 4 and calls[-1][0]["do_sample"] is False
    words = full.split()
    assert 3 <= len(words) <= 8
    stop = " " + words[2]
    (cut,) = lm.generate_until([Instance("generate_until", {}, (context, {"max_gen_toks": 8, "until": [stop]}), 0)])
    assert cut == full[:full.index(stop)] and stop not in cut
    (short,) = lm.generate_until([Instance("generate_until", {}, (context, {"max_gen_toks": 4, "until": ["zzz"]}),
                                           0)])
    assert calls[-1][1] == 4 and len(short.split()) <= 4
    with pytest.raises(ValueError, match="`max_gen_toks`"):
        lm.generate_until([Instance("generate_until", {}, (context, {"max_gen_toks": 0}), 0)])
    with pytest.raises(ValueError, match="not_a_setting"):
        lm.generate_until([Instance("generate_until", {}, (context, {"max_gen_toks": 4, "not_a_setting": 1}), 0)])
    with pytest.raises(ValueError, match=r"`max_gen_toks` \(256\) exceeds `max_length` \(64\)"):
        lm.generate_until([Instance("generate_until", {}, (context, {}), 0)])


def test_generate_until_passes_the_cache_and_the_factor_rule(tok):
    model = oracle_llada(tok)
    lm = harness(model, tok, steps=8, block_length=4, cache="dual", factor=1.0)
    request = Instance("generate_until", {}, ("the a of", {"max_gen_toks": 8, "until": []}), 0)
    (text,) = lm.generate_until([request])
    prompt = tok(["the a of"], return_tensors="pt")
    expected = model.generate(prompt.input_ids, attention_mask=prompt.attention_mask, max_new_tokens=8, steps=8,
                              block_length=4, cache_implementation="dual", factor=1.0, do_sample=False)
    assert text == tok.decode(expected[0, prompt.input_ids.shape[1]:], skip_special_tokens=True)
    assert harness(model, tok, cache="none")._generate_kwargs() == {"cache_implementation": None}


def test_compile_runs_generation_through_the_compiled_call(tok, monkeypatch):
    """`compile=True` asks for transformers' compiled call (the eager call stands in for it here, to keep the test
    fast); generation goes through it and gives the library's tokens."""
    model = oracle_llada(tok)
    calls = []

    def get_compiled_call(config):
        calls.append(config)
        return model.__call__

    monkeypatch.setattr(model, "get_compiled_call", get_compiled_call)
    lm = harness(model, tok, steps=8, block_length=4, cache="dual", compile=True)
    (text,) = lm.generate_until([Instance("generate_until", {}, ("the a of", {"max_gen_toks": 8, "until": []}), 0)])
    assert len(calls) == 1 and calls[0].backend == "inductor"
    prompt = tok(["the a of"], return_tensors="pt")
    expected = model.generate(prompt.input_ids, attention_mask=prompt.attention_mask, max_new_tokens=8, steps=8,
                              block_length=4, cache_implementation="dual", do_sample=False)
    assert text == tok.decode(expected[0, prompt.input_ids.shape[1]:], skip_special_tokens=True)
    assert "compile_config" not in harness(model, tok, compile=False)._generate_kwargs()


def test_generation_task_runs_through_the_harness(tok, task_manager, tmp_path):
    model = oracle_llada(tok)
    results = evaluate(harness(model, tok), ["oracle_continuation"], task_manager, limit=3)
    for sample in results["samples"]["oracle_continuation"]:
        text = sample["resps"][0][0]
        assert "." not in text and len(text.split()) <= 8
    metrics = results["results"]["oracle_continuation"]
    assert metrics["words,none"] <= 8 and (math.isnan(metrics["oracle_nll,none"]) or metrics["oracle_nll,none"] > 0)


def test_chat_templates_are_applied_or_refused_by_name(tok):
    model = oracle_llada(tok)
    lm = harness(model, tok)
    with pytest.raises(ValueError, match="no chat template"):
        lm.apply_chat_template([{"role": "user", "content": "the"}])
    chat_tok = OracleLanguage().tokenizer(model_max_length=64)
    chat_tok.chat_template = ("{% for m in messages %}{{ m['content'] }} .{% endfor %}"
                              "{% if add_generation_prompt %} the{% endif %}")
    lm = harness(model, chat_tok)
    assert lm.apply_chat_template([{"role": "user", "content": "a of"}]) == "a of . the"
    assert lm.chat_template(True) == chat_tok.chat_template
    with pytest.raises(ValueError, match="no chat template named 'tool_use'"):
        lm.chat_template("tool_use")
    chat_tok.chat_template = {"default": chat_tok.chat_template, "short": "{{ messages[0]['content'] }}"}
    lm = harness(model, chat_tok)
    assert lm.chat_template("short") == "{{ messages[0]['content'] }}"
    assert lm.apply_chat_template([{"role": "user", "content": "a of"}]) == "a of"


# ---------------------------------------------------------------------------------------------- every artifact


@pytest.mark.slow
def test_a_two_bit_checkpoint_evaluates_from_its_folder(tok, task_manager, tmp_path):
    model = oracle_llada(tok)
    QuantDLLMQuantizer(QuantDLLMConfig(**TINY_QUANT)).quantize_model(
        model, calibration_data=torch.randint(0, 256, (8, 24), generator=torch.Generator().manual_seed(0)),
        show_progress=False)
    model.save_pretrained(tmp_path / "q")
    tok.save_pretrained(tmp_path / "q")
    lm = DiffusionLM(pretrained=str(tmp_path / "q"), mc_num=8, batch_size=4, show_progress=False, seed=SEED)
    assert type(lm.model).__name__ == "LLaDAModelLM" and "QuantDLLMLinear" in repr(lm.model)
    context, one = ids(tok, "the a of"), ids(tok, " the")
    (score, _), = lm.loglikelihood([Instance("loglikelihood", {}, ("the a of", " the"), 0)])
    with torch.no_grad():  # one answer token: the ELBO is exactly log p(token | context, [MASK])
        logits = lm.model(torch.tensor([context + [tok.mask_token_id]])).logits
    assert score == pytest.approx(float(logits[0, -1].log_softmax(-1)[one[0]]), abs=1e-4)
    results = evaluate(lm, ["oracle_mc"], task_manager, limit=2)
    assert all(math.isfinite(r[0][0]) for s in results["samples"]["oracle_mc"] for r in s["resps"])


def test_a_dream_checkpoint_is_scored_with_its_next_token_shift(tok, task_manager, tmp_path):
    model = oracle_dream(tok)
    model.save_pretrained(tmp_path / "dream")
    tok.save_pretrained(tmp_path / "dream")
    lm = DiffusionLM(pretrained=str(tmp_path / "dream"), mc_num=8, batch_size=4, show_progress=False)
    context, one = ids(tok, "the a of"), ids(tok, " the")
    (score, _), = lm.loglikelihood([Instance("loglikelihood", {}, ("the a of", " the"), 0)])
    with torch.no_grad():
        logits = lm.model(torch.tensor([context + [tok.mask_token_id]])).logits
    shifted = float(logits[0, -2].log_softmax(-1)[one[0]])  # Dream: position i−1 predicts token i
    unshifted = float(logits[0, -1].log_softmax(-1)[one[0]])
    assert score == pytest.approx(shifted, abs=1e-4) and abs(score - unshifted) > 1e-3
    results = evaluate(lm, ["oracle_mc", "oracle_continuation"], task_manager, limit=2)
    assert set(results["results"]) == {"oracle_mc", "oracle_continuation"}


def test_an_ngram_model_evaluates_from_its_folder(tok, tmp_path):
    model = oracle_llada(tok, ngram_embedding={"max_n": 3, "num_tables": 2})
    model.save_pretrained(tmp_path / "ngram")
    tok.save_pretrained(tmp_path / "ngram")
    lm = DiffusionLM(pretrained=str(tmp_path / "ngram"), mc_num=8, batch_size=4, show_progress=False, seed=SEED)
    assert lm.model.config.ngram_embedding["max_n"] == 3
    (score, _), = lm.loglikelihood([Instance("loglikelihood", {}, ("the a of", " the a"), 0)])
    assert score == pytest.approx(elbo(lm.model, ids(tok, "the a of"), ids(tok, " the a")), abs=1e-9)
    (text,) = lm.generate_until([Instance("generate_until", {}, ("the a", {"max_gen_toks": 4}), 0)])
    assert len(text.split()) <= 4


def _student(tok) -> LLaDAModelLM:
    model = oracle_llada(tok)
    model.config.dimo_initial_state = DiMOInitialState(r_init=0.6, vocab_size=256).to_dict()
    model.generation_config.steps = 1
    return model


def test_a_dimo_student_generates_and_refuses_likelihood_tasks_by_name(tok, task_manager):
    lm = harness(_student(tok), tok)
    with pytest.raises(LikelihoodUnavailableError, match=r"loglikelihood: this model is a one-step Di\[M\]O"):
        lm.loglikelihood([Instance("loglikelihood", {}, ("the", " a"), 0)])
    with pytest.raises(LikelihoodUnavailableError, match=r"loglikelihood_rolling: .*Di\[M\]O"):
        lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("the a",), 0)])
    with pytest.raises(LikelihoodUnavailableError, match="generation tasks"):
        evaluate(lm, ["oracle_mc"], task_manager, limit=1)
    results = evaluate(lm, ["oracle_continuation"], task_manager, limit=2)
    assert results["results"]["oracle_continuation"]["words,none"] >= 0


def test_a_logit_fm_model_generates_and_refuses_likelihood_tasks(tok):
    torch.manual_seed(0)
    model = LogitFMModel(LogitFMConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                       intermediate_size=64, max_position_embeddings=48, time_embedding_dim=16,
                                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id)).eval()
    model.generation_config.num_steps = 2
    lm = harness(model, tok)
    with pytest.raises(LikelihoodUnavailableError, match="Logit-FM"):
        lm.loglikelihood([Instance("loglikelihood", {}, ("the", " a"), 0)])
    (text,) = lm.generate_until([Instance("generate_until", {}, ("the a", {"max_gen_toks": 5, "until": ["."]}), 0)])
    assert isinstance(text, str) and len(text.split()) <= 5
    with pytest.raises(ValueError, match="`steps` do not apply to a Logit-FM model"):
        harness(model, tok, steps=4)


# ---------------------------------------------------------------------------------------------- arguments, registry


@pytest.mark.parametrize("kwargs, match", [
    ({"mc_num": 10, "batch_size": 4}, r"`batch_size` \(4\) must divide `mc_num` \(10\)"),
    ({"batch_size": "auto"}, "`batch_size` 'auto' is not supported"),
    ({"mc_num": 0}, "`mc_num` must be an integer >= 1"),
    ({"max_batch_size": 64}, "`max_batch_size`"),
    ({"cfg": -1.0}, "`cfg` must be a number >= 0"),
    ({"threshold": 0.0}, "`threshold` must be a number > 0"),
    ({"remasking": "best"}, "`remasking` must be one of"),
    ({"cache": "static"}, "`cache` must be one of"),
    ({"compile": "yes"}, "`compile` must be true or false"),
    ({"factor": 0}, "`factor` must be a number > 0"),
    ({"dtype": "int8"}, "`dtype` must be one of"),
    ({"is_check_greedy": "yes"}, "`is_check_greedy` must be true or false"),
    ({"seed": 1.5}, "`seed` must be an integer"),
])
def test_bad_model_arguments_are_refused_by_name(tok, kwargs, match):
    with pytest.raises(ValueError, match=match):
        harness(oracle_llada(tok), tok, **kwargs)


def test_the_harness_finds_hf_dlm_by_name_and_keeps_its_own_models(tok, tmp_path):
    model = oracle_llada(tok)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    assert get_model("hf-dlm") is DiffusionLM and get_model("hf") is HFLM
    lm = get_model("hf-dlm").create_from_arg_string(f"pretrained={tmp_path / 'm'},mc_num=8,batch_size=4",
                                                    {"batch_size": None, "max_batch_size": None, "device": "cpu"})
    assert lm.mc_num == 8 and lm.batch_size == 4 and lm.device == torch.device("cpu")
    assert lm.max_length == model.config.max_sequence_length
    with pytest.raises(ValueError, match="has no tokenizer"):
        model.save_pretrained(tmp_path / "no-tok")
        DiffusionLM(pretrained=str(tmp_path / "no-tok"))


# ---------------------------------------------------------------------------------------------- request helpers


def test_encode_pair_moves_trailing_spaces_into_the_continuation(tok):
    context, continuation = encode_pair(tok, "the a ", "of")
    assert context == ids(tok, "the a") and continuation == ids(tok, " of")
    assert encode_pair(tok, "", "the a") == ([], ids(tok, "the a"))


def test_fit_context_cuts_on_the_left():
    assert fit_context([1, 2, 3, 4], [5, 6], 4) == ([3, 4], 2)
    assert fit_context([1], [5, 6], 4) == ([1], 0)


@pytest.mark.parametrize("gen_kwargs, expected", [
    ({"until": "x"}, (["x", "<eos>"], 256, {"do_sample": False, "temperature": 0.0})),
    ({"until": ["x", ""], "max_gen_toks": 3, "do_sample": True, "temperature": 0.7, "top_p": 0.9},
     (["x", "<eos>"], 3, {"do_sample": True, "temperature": 0.7, "top_p": 0.9})),
    ({"temperature": 0.5}, (["<eos>"], 256, {"do_sample": True, "temperature": 0.5})),
    (None, (["<eos>"], 256, {"do_sample": False, "temperature": 0.0})),
])
def test_parse_gen_kwargs(gen_kwargs, expected):
    parsed = parse_gen_kwargs(gen_kwargs, 256, "<eos>")
    assert (parsed.until, parsed.max_new_tokens, parsed.generate_kwargs) == expected


@pytest.mark.parametrize("gen_kwargs, match", [
    ({"until": 3}, "`until` must be a string or a list"),
    ({"max_gen_toks": -1}, "`max_gen_toks`"),
    ({"temperature": float("nan")}, "`temperature`"),
    ({"do_sample": True, "temperature": 0}, "`do_sample=True` with `temperature=0`"),
    ({"do_sample": "no"}, "`do_sample` must be true or false"),
])
def test_parse_gen_kwargs_refuses_bad_values(gen_kwargs, match):
    with pytest.raises(ValueError, match=match):
        parse_gen_kwargs(gen_kwargs, 256, None)


def test_cut_at_stop_strings_takes_the_earliest():
    assert cut_at_stop_strings("a b . c <eos>", [" c", " ."]) == "a b"
    assert cut_at_stop_strings("a b", []) == "a b"
