"""Extending a pretrained causal LM's vocabulary with a VQ codebook and the sequence-format special tokens.

The sequence format is the one of "Pre-trained Language Models Do Not Help Auto-regressive Text-to-Image
Generation" (§2.1): ``<doc> <text> … </text> <image> … </image> </doc>``, padded with ``<pad>``. Codebook index
``k`` becomes token ``<img{k}>``; the codebook's tokens take contiguous ids, so the mapping is an offset.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from tokenizers import AddedToken
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

logger = logging.get_logger(__name__)

# role → token string, in the order the tokens are added
FORMAT_TOKENS = {"doc_start": "<doc>", "doc_end": "</doc>", "text_start": "<text>", "text_end": "</text>",
                 "image_start": "<image>", "image_end": "</image>"}
PAD_TOKEN = "<pad>"
CONFIG_ATTRIBUTE = "image_tokens"


def image_token_string(code: int) -> str:
    return f"<img{code}>"


@dataclass(frozen=True)
class ImageTokenMap:
    """Where a VQ codebook and the format tokens live in an extended vocabulary.

    ``codebook_size`` codes take ids ``image_token_offset … image_token_offset + codebook_size − 1``;
    ``special_ids`` maps the roles of [`FORMAT_TOKENS`] plus ``pad`` to ids; ``image_grid`` is the (height, width)
    of an image's token grid when known (the collator and the pipeline need it). Serialises to a dict stored as
    ``config.image_tokens`` of the extended model, so it travels with ``save_pretrained``.
    """

    codebook_size: int
    image_token_offset: int
    special_ids: dict[str, int] = field(default_factory=dict)
    image_grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.codebook_size, int) or self.codebook_size <= 0:
            raise ValueError(f"`codebook_size` must be a positive integer, got {self.codebook_size!r}.")
        missing = set(FORMAT_TOKENS) | {"pad"}
        missing -= set(self.special_ids)
        if missing:
            raise ValueError(f"`special_ids` lacks the roles {sorted(missing)}.")
        if self.image_grid is not None:
            grid = tuple(int(x) for x in self.image_grid)
            if len(grid) != 2 or min(grid) <= 0:
                raise ValueError(f"`image_grid` must be (height, width) with positive sides, got {self.image_grid!r}.")
            object.__setattr__(self, "image_grid", grid)

    # ------------------------------------------------------------------ ids
    @property
    def num_image_tokens(self) -> int:
        """Tokens per image (height × width of the grid)."""
        if self.image_grid is None:
            raise ValueError("this ImageTokenMap has no `image_grid`; pass one to `add_image_tokens` or "
                             "`with_grid`.")
        return self.image_grid[0] * self.image_grid[1]

    def __getitem__(self, role: str) -> int:
        return self.special_ids[role]

    def is_image_token(self, token_ids: torch.Tensor) -> torch.Tensor:
        """Boolean mask of the ids that are codebook tokens."""
        return (token_ids >= self.image_token_offset) & (token_ids < self.image_token_offset + self.codebook_size)

    def codes_to_ids(self, codes: torch.Tensor) -> torch.LongTensor:
        """Codebook indices → token ids. Raises when an index lies outside ``[0, codebook_size)``."""
        codes = torch.as_tensor(codes)
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.codebook_size):
            raise ValueError(f"codebook indices must lie in [0, {self.codebook_size - 1}], got values in "
                             f"[{int(codes.min())}, {int(codes.max())}].")
        return codes.long() + self.image_token_offset

    def ids_to_codes(self, token_ids: torch.Tensor) -> torch.LongTensor:
        """Token ids → codebook indices. Raises when an id is not a codebook token."""
        token_ids = torch.as_tensor(token_ids).long()
        if not bool(self.is_image_token(token_ids).all()):
            bad = token_ids[~self.is_image_token(token_ids)][:5].tolist()
            raise ValueError(f"token ids {bad} are not image tokens (image ids are {self.image_token_offset}…"
                             f"{self.image_token_offset + self.codebook_size - 1}).")
        return token_ids - self.image_token_offset

    def with_grid(self, image_grid: tuple[int, int]) -> "ImageTokenMap":
        return ImageTokenMap(self.codebook_size, self.image_token_offset, dict(self.special_ids), image_grid)

    # ------------------------------------------------------------------ serialisation
    def to_dict(self) -> dict:
        out = asdict(self)
        out["image_grid"] = list(self.image_grid) if self.image_grid is not None else None
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "ImageTokenMap":
        grid = data.get("image_grid")
        return cls(int(data["codebook_size"]), int(data["image_token_offset"]),
                   {k: int(v) for k, v in data["special_ids"].items()}, tuple(grid) if grid is not None else None)

    @classmethod
    def from_model(cls, model: PreTrainedModel) -> "ImageTokenMap":
        """The map stored on a model extended by [`add_image_tokens`] (``config.image_tokens``)."""
        data = getattr(model.config, CONFIG_ATTRIBUTE, None)
        if not data:
            raise ValueError(f"{type(model).__name__}'s config has no `{CONFIG_ATTRIBUTE}`: extend the model with "
                             "`add_image_tokens` first.")
        return cls.from_dict(data)


def _check_tokenizer(tokenizer: PreTrainedTokenizerBase, codebook_size: int) -> bool:
    """Raise when a token we add already exists with another meaning; returns whether ``<pad>`` must be added."""
    vocab = tokenizer.get_vocab()
    taken = [t for t in FORMAT_TOKENS.values() if t in vocab]
    taken += [image_token_string(k) for k in range(codebook_size) if image_token_string(k) in vocab][:3]
    if taken:
        raise ValueError(f"the tokenizer already holds {taken} (ids {[vocab[t] for t in taken]}) with another "
                         "meaning; the format tokens <doc> </doc> <text> </text> <image> </image> and the image "
                         "tokens <img0>… must be new. Extend a tokenizer that has not been extended before.")
    if tokenizer.pad_token is not None:
        return False
    if PAD_TOKEN in vocab:
        raise ValueError(f"the tokenizer holds '{PAD_TOKEN}' (id {vocab[PAD_TOKEN]}) but not as its pad token; "
                         "set `tokenizer.pad_token` if it is the padding token, or use a tokenizer without it.")
    return True


def _row_std(weight: torch.Tensor, rows: int) -> float:
    return float(weight[:rows].detach().float().std()) if rows > 1 else 0.02


@torch.no_grad()
def add_image_tokens(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, codebook_size: int, *,
                     image_grid: tuple[int, int] | None = None, image_embeddings: torch.Tensor | None = None,
                     init_std: float | None = None, generator: torch.Generator | None = None) -> ImageTokenMap:
    """Extend ``model`` and ``tokenizer`` (in place) with ``codebook_size`` image tokens and the format tokens.

    The six format tokens (and ``<pad>`` when the tokenizer has no pad token) are added as special tokens, then
    ``<img0> … <img{K−1}>``; the model is resized with ``resize_token_embeddings``. Rows of the tokenizer's tokens
    keep their values (rows past the tokenizer's vocabulary, the padding rows of a padded embedding, are reused for
    the new tokens). New rows of the input embedding are ``image_embeddings`` for the codebook (e.g. from
    [`contrastive_alignment`], §3.2) or normal with std ``init_std`` (default: the std of the existing rows, so the
    new tokens start at the pretrained scale); format tokens are always drawn that way. An untied output layer's
    new rows are drawn the same way (std of its own existing rows); a tied head stays tied and so shares the input
    rows. Returns the [`ImageTokenMap`], also stored as ``model.config.image_tokens``.
    """
    if isinstance(codebook_size, bool) or not isinstance(codebook_size, int) or codebook_size <= 0:
        raise ValueError(f"`codebook_size` must be a positive integer, got {codebook_size!r}.")
    if init_std is not None and (not math.isfinite(init_std) or init_std < 0):
        raise ValueError(f"`init_std` must be a finite number >= 0, got {init_std!r}.")
    embeddings = model.get_input_embeddings()
    hidden = embeddings.weight.shape[1]
    if image_embeddings is not None and tuple(image_embeddings.shape) != (codebook_size, hidden):
        raise ValueError(f"`image_embeddings` must have shape (codebook_size, hidden) = ({codebook_size}, {hidden}), "
                         f"got {tuple(image_embeddings.shape)}.")
    add_pad = _check_tokenizer(tokenizer, codebook_size)
    old_rows = embeddings.weight.shape[0]
    old_tokens = len(tokenizer)
    output = model.get_output_embeddings()
    tied = output is not None and output.weight.data_ptr() == embeddings.weight.data_ptr()
    input_std = init_std if init_std is not None else _row_std(embeddings.weight, min(old_rows, old_tokens))
    output_std = init_std if init_std is not None or output is None else _row_std(output.weight, old_tokens)

    specials: dict = {"extra_special_tokens": list(FORMAT_TOKENS.values())}
    if add_pad:
        specials["pad_token"] = PAD_TOKEN
    tokenizer.add_special_tokens(specials, replace_extra_special_tokens=False)
    tokenizer.add_tokens([AddedToken(image_token_string(k), normalized=False, special=False)
                          for k in range(codebook_size)])
    image_ids = tokenizer.convert_tokens_to_ids([image_token_string(k) for k in range(codebook_size)])
    offset = image_ids[0]
    if image_ids != list(range(offset, offset + codebook_size)):
        raise RuntimeError("the tokenizer gave the image tokens non-contiguous ids; cannot map codes by offset.")
    special_ids = {role: tokenizer.convert_tokens_to_ids(tok) for role, tok in FORMAT_TOKENS.items()}
    special_ids["pad"] = tokenizer.pad_token_id
    new_ids = sorted(set(range(old_tokens, len(tokenizer))))

    model.resize_token_embeddings(max(len(tokenizer), old_rows), mean_resizing=False)
    embeddings = model.get_input_embeddings()
    ids = torch.tensor(new_ids, dtype=torch.long)
    device, dtype = embeddings.weight.device, embeddings.weight.dtype
    rows = torch.randn(len(new_ids), hidden, generator=generator) * input_std
    if image_embeddings is not None:
        rows[(ids >= offset) & (ids < offset + codebook_size)] = image_embeddings.detach().float().cpu()
    embeddings.weight[ids.to(device)] = rows.to(device, dtype)
    output = model.get_output_embeddings()
    if output is not None and not tied:
        out_rows = torch.randn(len(new_ids), output.weight.shape[1], generator=generator) * output_std
        output.weight[ids.to(output.weight.device)] = out_rows.to(output.weight.device, output.weight.dtype)
        if getattr(output, "bias", None) is not None:
            output.bias[ids.to(output.bias.device)] = 0.0
    if model.config.pad_token_id is None:
        model.config.pad_token_id = special_ids["pad"]
    token_map = ImageTokenMap(codebook_size, offset, special_ids, image_grid)
    setattr(model.config, CONFIG_ATTRIBUTE, token_map.to_dict())
    logger.info("added %d tokens (%d image tokens at ids %d…%d); vocabulary %d → %d", len(new_ids), codebook_size,
                offset, offset + codebook_size - 1, old_tokens, len(tokenizer))
    return token_map


__all__ = ["FORMAT_TOKENS", "ImageTokenMap", "add_image_tokens", "image_token_string"]
