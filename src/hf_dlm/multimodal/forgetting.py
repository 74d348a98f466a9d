"""The forgetting probe of "Pre-trained Language Models Do Not Help Auto-regressive Text-to-Image Generation"
(Table 1): how well the language model still models text-only data after image training — held-out next-token NLL
and greedy completions of fixed prompts, measured before and after."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .tokens import ImageTokenMap


@dataclass
class ForgettingProbe:
    """``text_nll``: mean next-token NLL (nats) on the held-out text; ``completions``: the greedy continuation of
    each prompt (decoded, special tokens kept); ``completion_ids``: the same as token ids; ``non_text_fraction``:
    the share of completion tokens that are image or format tokens (0 when no token map is given)."""

    text_nll: float
    completions: list[str]
    completion_ids: list[list[int]]
    non_text_fraction: float

    def to_dict(self) -> dict:
        return {"text_nll": self.text_nll, "completions": self.completions, "non_text_fraction":
                self.non_text_fraction}


@torch.no_grad()
def heldout_text_nll(model: PreTrainedModel, input_ids: torch.LongTensor, batch_size: int = 64) -> float:
    """Mean next-token NLL (nats per predicted token) of a causal LM on (N, L) unpadded sequences."""
    total, count = 0.0, 0
    device = model.device
    for batch in input_ids.split(batch_size):
        batch = batch.to(device)
        logits = model(input_ids=batch).logits[:, :-1].float()
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1),
                                       reduction="sum"))
        count += batch[:, 1:].numel()
    return total / count


@torch.no_grad()
def forgetting_probe(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, heldout_ids: torch.LongTensor,
                     prompts: Sequence[Sequence[int]], max_new_tokens: int = 8,
                     token_map: ImageTokenMap | None = None, batch_size: int = 64) -> ForgettingProbe:
    """Probe ``model``'s text ability: NLL on ``heldout_ids`` (text-only, in the pre-training format) and greedy
    ``max_new_tokens``-token completions of each prompt (token ids in the pre-training format)."""
    if max_new_tokens < 1:
        raise ValueError(f"`max_new_tokens` must be >= 1, got {max_new_tokens}.")
    was_training = model.training
    model.eval()
    nll = heldout_text_nll(model, heldout_ids, batch_size)
    completions, completion_ids = [], []
    non_text, produced = 0, 0
    for prompt in prompts:
        ids = torch.tensor([list(prompt)], device=model.device)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens,
                             do_sample=False, pad_token_id=tokenizer.pad_token_id)[0, ids.shape[1]:]
        completion_ids.append(out.tolist())
        completions.append(tokenizer.decode(out, skip_special_tokens=False))
        if token_map is not None:
            specials = torch.tensor(sorted(v for k, v in token_map.special_ids.items() if k != "pad"),
                                    device=out.device)
            non_text += int((token_map.is_image_token(out) | torch.isin(out, specials)).sum())
        produced += len(out)
    model.train(was_training)
    return ForgettingProbe(nll, completions, completion_ids, non_text / max(produced, 1))


__all__ = ["ForgettingProbe", "forgetting_probe", "heldout_text_nll"]
