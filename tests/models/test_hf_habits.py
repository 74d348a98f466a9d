"""Hugging Face habits of our text denoisers (issue 20, item 6):

1. ``resize_token_embeddings`` keeps the config consistent and the checkpoint reloads (LLaDA tied and untied, with
   its two sizes ``vocab_size`` / ``embedding_size``; Dream tied and untied; ``pad_to_multiple_of``).
2. ``labels`` gives the ``AutoModelForMaskedLM`` loss on masked positions, and refuses labels on visible tokens, so
   a plain ``Trainer`` with a causal-LM collator fails loudly.
3. ``pipeline("text-generation")`` with a chat returns the assistant turn cut at the model's end-of-turn ids.
"""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoConfig, pipeline
from transformers.modeling_outputs import MaskedLMOutput

from hf_dlm import DreamForMaskedLM, DreamModel, LLaDAModel, LLaDAModelLM

from tests.utils.models import tiny_dream_config, tiny_llada_config

MASK, PAD, EOS, BOS = 95, 94, 93, 92  # the tiny configs' special ids
START_HEADER, END_HEADER, EOT, UNK = 89, 90, 91, 88
WORDS = ["user", "assistant", "system", "hello", "how", "are", "you", "fine", "thanks", "the", "cat"]
CHAT_TEMPLATE = (  # LLaDA-8B-Instruct's turn layout (Llama-3 headers, turns ended by <|eot_id|>)
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|> {{ m['content'] }}"
    "<|eot_id|>{% endfor %}{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|> {% endif %}")


def chat_tokenizer():
    """A word-level tokenizer over the tiny models' 96 ids with LLaDA-8B-Instruct's special tokens and a chat
    template: ``<|endoftext|>`` is EOS (93) and ``<|eot_id|>`` (91) ends a turn."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = WORDS + [f"w{i}" for i in range(UNK - len(WORDS))]
    vocab = {word: i for i, word in enumerate(words)}
    vocab.update({"<unk>": UNK, "<|start_header_id|>": START_HEADER, "<|end_header_id|>": END_HEADER,
                  "<|eot_id|>": EOT, "<|startoftext|>": BOS, "<|endoftext|>": EOS, "<pad>": PAD,
                  "<|mdm_mask|>": MASK})
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|startoftext|>", eos_token="<|endoftext|>", pad_token="<pad>",
        mask_token="<|mdm_mask|>", unk_token="<unk>",
        additional_special_tokens=["<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"],
        chat_template=CHAT_TEMPLATE)


def _build(kind: str):
    torch.manual_seed(0)
    if kind == "llada":
        return LLaDAModelLM(tiny_llada_config()).eval()
    if kind == "llada-tied":
        return LLaDAModelLM(tiny_llada_config(weight_tying=True)).eval()
    if kind == "dream":
        return DreamModel(tiny_dream_config()).eval()
    if kind == "dream-tied":
        return DreamModel(tiny_dream_config(tie_word_embeddings=True)).eval()
    if kind == "dream-mlm":
        return DreamForMaskedLM(tiny_dream_config()).eval()
    raise ValueError(kind)


def _heads_tied(model) -> bool:
    return model.get_output_embeddings().weight is model.get_input_embeddings().weight


# ---------------------------------------------------------------------------------------------- 1. resizing
@pytest.mark.parametrize("kind", ["llada", "llada-tied", "dream", "dream-tied"])
@pytest.mark.parametrize("new_num_tokens, pad_to_multiple_of", [("len+2", None), (103, None), (103, 64), (None, 64)])
def test_resize_save_reload_gives_identical_logits(tmp_path, kind, new_num_tokens, pad_to_multiple_of):
    model = _build(kind)
    if new_num_tokens == "len+2":  # the habit: two tokens added to the tokenizer
        new_num_tokens = len(chat_tokenizer()) + 2
    old_rows = model.get_input_embeddings().weight.shape[0]
    old_vocab = model.config.vocab_size
    model.resize_token_embeddings(new_num_tokens, pad_to_multiple_of=pad_to_multiple_of, mean_resizing=False)
    rows = new_num_tokens if new_num_tokens is not None else old_rows
    if pad_to_multiple_of is not None:
        rows = -(-rows // pad_to_multiple_of) * pad_to_multiple_of
    assert model.get_input_embeddings().weight.shape[0] == rows
    assert model.get_output_embeddings().weight.shape[0] == rows
    assert _heads_tied(model) == kind.endswith("tied")
    if kind.startswith("llada"):  # rows in embedding_size, real tokens in vocab_size
        assert model.config.embedding_size == rows
        assert model.config.vocab_size == (new_num_tokens if new_num_tokens is not None else old_vocab)
    else:  # Dream has one size: the rows
        assert model.config.vocab_size == rows

    model.save_pretrained(tmp_path)
    reloaded = type(model).from_pretrained(tmp_path).eval()
    config = AutoConfig.from_pretrained(tmp_path)
    for name in ("vocab_size", "embedding_size", "mask_token_id", "tie_word_embeddings"):
        assert getattr(config, name, None) == getattr(model.config, name, None), name
    assert _heads_tied(reloaded) == kind.endswith("tied")
    ids = torch.randint(0, min(rows, MASK), (2, 12), generator=torch.Generator().manual_seed(1))
    ids[0, -1] = rows - 1  # a new (or padding) row
    ids[1, 3] = MASK
    with torch.no_grad():
        expected, got = model(ids).logits, reloaded(ids).logits
    assert expected.shape[-1] == rows
    assert torch.equal(expected, got)


def test_resize_keeps_the_old_rows_and_the_llada_trunk_resizes_its_head():
    model = _build("llada")
    before = model.get_input_embeddings().weight[:100].clone()
    model.resize_token_embeddings(110)
    assert torch.equal(model.get_input_embeddings().weight[:100], before)
    trunk = LLaDAModel(tiny_llada_config())
    trunk.resize_token_embeddings(110)
    assert trunk.transformer.wte.weight.shape[0] == trunk.transformer.ff_out.weight.shape[0] == 110
    assert (trunk.config.vocab_size, trunk.config.embedding_size) == (110, 110)


@pytest.mark.parametrize("kind", ["llada", "dream"])
def test_resize_that_drops_the_mask_token_is_refused(kind):
    model = _build(kind)
    with pytest.raises(ValueError, match="mask_token_id"):
        model.resize_token_embeddings(MASK)
    assert model.get_input_embeddings().weight.shape[0] == (100 if kind == "llada" else 96)  # untouched


# ------------------------------------------------------------------------------------------------ 2. labels
def _masked_batch():
    """Ids in [0, 90), some positions masked; labels on all masked positions but one (which stays -100)."""
    generator = torch.Generator().manual_seed(2)
    clean = torch.randint(0, 90, (2, 10), generator=generator)
    masked = torch.zeros_like(clean, dtype=torch.bool)
    masked[0, [2, 5, 6]] = True
    masked[1, [1, 4, 8, 9]] = True
    input_ids = clean.masked_fill(masked, MASK)
    labels = torch.where(masked, clean, torch.full_like(clean, -100))
    labels[1, 8] = -100  # masked but not labelled: ignored
    return input_ids, labels


@pytest.mark.parametrize("kind", ["llada", "dream", "dream-mlm"])
def test_labels_loss_is_the_masked_lm_cross_entropy(kind):
    model = _build(kind)
    input_ids, labels = _masked_batch()
    with torch.no_grad():
        out = model(input_ids, labels=labels)
        logits = out.logits
    rows, cols = (labels != -100).nonzero(as_tuple=True)
    if kind == "dream":  # raw logits: position i - 1 predicts token i (no labelled position is 0)
        predicted = logits[rows, cols - 1]
    else:
        predicted = logits[rows, cols]
    expected = F.cross_entropy(predicted.float(), labels[rows, cols])
    assert out.loss is not None
    torch.testing.assert_close(out.loss, expected)
    assert len(rows) == 6

    with torch.no_grad():  # the Trainer's gradient-accumulation form: sum / num_items_in_batch
        summed = model(input_ids, labels=labels, num_items_in_batch=torch.tensor(12))
        as_tuple = model(input_ids, labels=labels, return_dict=False)
    torch.testing.assert_close(summed.loss, expected * 6 / 12)
    torch.testing.assert_close(as_tuple[0], expected)


def test_dream_losses_agree_between_raw_and_aligned_heads():
    input_ids, labels = _masked_batch()
    with torch.no_grad():
        raw = _build("dream")(input_ids, labels=labels).loss
        aligned = _build("dream-mlm")(input_ids, labels=labels).loss
    assert raw is not None
    torch.testing.assert_close(raw, aligned)


@pytest.mark.parametrize("kind", ["llada", "dream", "dream-mlm"])
def test_labels_on_unmasked_positions_are_refused_by_name(kind):
    model = _build(kind)
    input_ids, labels = _masked_batch()
    labels[0, 0] = input_ids[0, 0]  # a visible token labelled
    labels[1, 2] = input_ids[1, 2]
    with pytest.raises(ValueError, match=r"`labels` marks 2 of 8 labelled positions") as error:
        model(input_ids, labels=labels)
    message = str(error.value)
    assert "MaskedDiffusionTrainer" in message and "MaskedDiffusionSFTCollator" in message
    with pytest.raises(ValueError, match="`labels` needs `input_ids`"):
        model(inputs_embeds=model.get_input_embeddings()(input_ids), labels=labels)


def test_plain_trainer_with_a_causal_lm_collator_fails_loudly(tmp_path):
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    tokenizer = chat_tokenizer()
    texts = ["hello how are you", "fine thanks the cat", "the cat", "how are you"]
    dataset = [{"input_ids": tokenizer(text)["input_ids"]} for text in texts]
    args = TrainingArguments(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=2, use_cpu=True,
                             report_to=[], save_strategy="no", logging_strategy="no", disable_tqdm=True)
    trainer = Trainer(model=_build("llada").train(), args=args, train_dataset=dataset,
                      data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
    with pytest.raises(ValueError, match=r"`labels` marks \d+ of \d+ labelled positions .*MaskedDiffusionTrainer"):
        trainer.train()


# ------------------------------------------------------------------------------------ 3. chat in a pipeline
ANSWER = ["fine", "thanks", "<|eot_id|>", "the", "cat", "<|endoftext|>", "<|endoftext|>", "<|endoftext|>"]


def _scripted_forward(embedding_size: int, script: list[int]):
    """A denoiser forward whose answer positions (the last ``len(script)`` of the canvas) are sure of ``script``:
    the model 'writes' an end-of-turn, then more text, then EOS, as an instruct model may."""

    def forward(input_ids=None, attention_mask=None, **kwargs):
        batch, length = input_ids.shape
        logits = torch.zeros(batch, length, embedding_size)
        positions = torch.arange(length - len(script), length)
        logits[:, positions, torch.tensor(script)] = 30.0
        return MaskedLMOutput(logits=logits)

    return forward


@pytest.fixture
def chat_pipeline(tmp_path):
    """``pipeline("text-generation")`` on a tiny LLaDA saved with a chat-template tokenizer, loaded by path; its
    ``generation_config.json`` lists both stop ids, the transformers way (as Llama-3-Instruct lists
    ``eos_token_id: [128001, 128008, 128009]``): ``<|endoftext|>`` and ``<|eot_id|>``."""

    def make(eos_token_id):
        tokenizer = chat_tokenizer()
        model = _build("llada")
        model.generation_config.eos_token_id = eos_token_id
        model.save_pretrained(tmp_path)
        tokenizer.save_pretrained(tmp_path)
        generator = pipeline("text-generation", model=str(tmp_path))
        generator.model.forward = _scripted_forward(model.config.embedding_size,
                                                    tokenizer.convert_tokens_to_ids(ANSWER))
        return generator

    return make


def test_chat_pipeline_cuts_the_assistant_turn_at_end_of_turn(chat_pipeline):
    generator = chat_pipeline([EOS, EOT])
    assert generator.model.generation_config.eos_token_id == [EOS, EOT]  # the list survives generation_config.json
    chat = [{"role": "user", "content": "hello how are you"}]
    out = generator(chat, max_new_tokens=len(ANSWER))
    assert out[0]["generated_text"] == chat + [{"role": "assistant", "content": "fine thanks"}]
    batched = generator([chat, [{"role": "user", "content": "hello"}]], max_new_tokens=len(ANSWER), batch_size=2)
    assert [rows[0]["generated_text"][-1]["content"] for rows in batched] == ["fine thanks", "fine thanks"]
    assert generator(chat, max_new_tokens=len(ANSWER), return_full_text=False)[0]["generated_text"] == "fine thanks"


def test_chat_pipeline_end_of_turn_ids_can_be_passed_per_call(chat_pipeline):
    generator = chat_pipeline(EOS)  # a checkpoint that only knows <|endoftext|>
    chat = [{"role": "user", "content": "hello how are you"}]
    leaked = generator(chat, max_new_tokens=len(ANSWER))[0]["generated_text"][-1]["content"]
    assert leaked == "fine thanks the cat"  # why the stop ids must include <|eot_id|>
    cut = generator(chat, max_new_tokens=len(ANSWER), eos_token_id=[EOS, EOT])
    assert cut[0]["generated_text"][-1]["content"] == "fine thanks"


def test_chat_pipeline_stop_sequence_cuts_at_end_of_turn(chat_pipeline):
    generator = chat_pipeline(EOS)
    chat = [{"role": "user", "content": "hello how are you"}]
    out = generator(chat, max_new_tokens=len(ANSWER), stop_sequence="<|eot_id|>")
    assert out[0]["generated_text"][-1] == {"role": "assistant", "content": "fine thanks"}
