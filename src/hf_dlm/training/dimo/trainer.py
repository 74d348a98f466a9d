"""``DiMOTrainer``: Di[M]O — Distilling Masked Diffusion Models into One-step Generator (Zhu, Wang, Lathuilière,
Kalogeiton, 2025), Algorithm 1, as a ``transformers.Trainer``.

One optimisation step, for a batch of conditions c:

1. x_init ~ p_init (a partly masked random sequence, Sec. 4.3); generator logits z_θ(x_init, c) (line 5);
2. x_θ ~ softmax(z_θ / τ) at every generated position (line 6);
3. t, x̃_t ~ q_t|0(· | x_θ) (line 8); teacher and auxiliary logits z_φ(x̃_t), z_ψ(x̃_t) without gradients (line 9);
4. g = ∇_{z_ψ} D(p_φ ‖ p_ψ) at the masked positions of x̃_t, and the generator loss whose gradient with respect to
   z_θ(x_init) is w(t)·g there (eq. 7, line 10) — the Trainer's optimizer steps θ;
5. the auxiliary model ψ is fitted to the generator's samples with the masked-diffusion cross-entropy on a fresh
   x̃_t' (lines 12–13) by a second optimizer owned by this trainer.

The teacher is frozen. ``memory_mode="full"`` keeps teacher, generator and auxiliary as three copies (as the paper);
``memory_mode="lora"`` keeps one frozen base model — the teacher, reached with ``disable_adapter()`` — carrying two
PEFT LoRA adapters, ``generator`` and ``auxiliary``. Every model is reached through the denoiser contract
(``hf_dlm.denoiser``), so text (LLaDA/Dream) and image (``MaskedImageTransformer``) teachers share this code.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import PreTrainedModel, Trainer, TrainerCallback
from transformers.utils import logging

from ..._io import AtomicCheckpointMixin, replace_file, save_atomically
from ..._training_guards import ResumeGuardMixin, check_token_ids, refuse_or_warn_missing_state
from ...denoiser import denoise, get_mask_token_id
from ...generation.initial_state import embedding_noise
from ...schedulers.scheduling_maskgit import mask_ratio_schedule
from .configuration import DiMOConfig
from .data import DiMOConditionCollator
from .divergences import FFunction, divergence_gradient, row_scale, surrogate_loss, token_divergence
from .ema import ParameterEMA

logger = logging.get_logger(__name__)

GENERATOR, AUXILIARY = "generator", "auxiliary"
STATE_FILE = "dimo_state.safetensors"
AUXILIARY_OPTIMIZER_FILE = "auxiliary_optimizer.pt"
_SCHEDULE_NAMES = {"uniform": "linear", "cosine": "cosine", "arccos": "arccos"}


@dataclass
class _Conditions:
    """What one batch of conditions turns into: the prompt prefix (text), the attention mask over the whole
    sequence, the conditioning kwargs of the denoiser and those of the unconditional (CFG) pass."""

    batch: int
    prefix: torch.LongTensor | None
    attention_mask: torch.Tensor | None
    kwargs: dict[str, torch.Tensor]
    null_kwargs: dict[str, torch.Tensor] | None


def logit_width(model: nn.Module) -> int:
    """Number of logits per position of a denoiser (the output layer's rows)."""
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if output is not None and hasattr(output, "weight"):
        return int(output.weight.shape[0])
    config = model.config
    return int(getattr(config, "embedding_size", None) or getattr(config, "vocab_size", None)
               or config.codebook_size)


def _is_image_model(model: nn.Module) -> bool:
    config = getattr(model, "config", None)
    return config is not None and "codebook_size" in config and "sample_size" in config


def _default_lora_targets(model: nn.Module) -> list[str]:
    """Full names of every ``nn.Linear`` except the output layer (the head stays the teacher's)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return [name for name, module in model.named_modules() if isinstance(module, nn.Linear) and module is not head]


class _EMAUpdate(TrainerCallback):
    def __init__(self, trainer: DiMOTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if self.trainer.ema is not None:
            self.trainer.ema.update()
        return control


class DiMOTrainer(ResumeGuardMixin, AtomicCheckpointMixin, Trainer):
    """Distils a masked-diffusion ``teacher`` into a one-step generator with Di[M]O (Zhu et al., 2025,
    Algorithm 1); see the module docstring for one step.

    Args:
        teacher: the frozen teacher φ — a LLaDA/Dream-style language model or a ``MaskedImageTransformer``.
        args: a [`DiMOConfig`].
        train_dataset / eval_dataset: conditions (``ConditionDataset``): prompts, class labels or captions.
        generator / auxiliary: initial θ and ψ in ``memory_mode="full"`` (default: copies of the teacher,
            Algorithm 1 line 1). Must not be given in ``lora`` mode, where both are adapters on the teacher.
        f_divergence: any differentiable f for D_f(p_φ ‖ p_ψ) = Σ q f(p/q), overriding ``args.divergence``.
        text_encoder / null_text_input_ids: for a text-conditioned image teacher, the frozen text encoder that
            turns ``text_input_ids`` into ``pooled_text_emb`` / ``encoder_hidden_states`` and the tokenized empty
            caption (the unconditional input of the teacher's CFG).
        excluded_token_ids: ids never drawn as random initial tokens nor sampled by the generator (default: the
            tokenizer's special tokens, or the config's pad/bos/eos ids).
        sample_metric_fn: ``fn(samples, conditions) -> dict`` computing a sample-quality metric at evaluation on
            one-step samples (``samples`` are the generated tokens, (batch, length)); default: the teacher's
            pseudo negative log-likelihood of the samples and their unigram entropy.
    """

    def __init__(self, teacher: nn.Module, args: DiMOConfig, train_dataset=None, eval_dataset=None,
                 generator: nn.Module | None = None, auxiliary: nn.Module | None = None, data_collator=None,
                 processing_class=None, callbacks: list[TrainerCallback] | None = None,
                 f_divergence: FFunction | None = None, text_encoder: nn.Module | None = None,
                 null_text_input_ids: torch.LongTensor | None = None, excluded_token_ids: list[int] | None = None,
                 sample_metric_fn: Callable[[torch.Tensor, dict], dict[str, float]] | None = None,
                 **kwargs: Any) -> None:
        if not isinstance(args, DiMOConfig):
            raise TypeError(f"`args` must be a DiMOConfig, got {type(args).__name__}.")
        try:
            self.mask_token_id = get_mask_token_id(teacher)
        except ValueError as error:
            raise ValueError(f"`teacher` is not a masked diffusion model: {error}") from None
        self.is_image = _is_image_model(teacher)
        if not self.is_image and args.generation_length is None:
            raise ValueError("`generation_length` must be set in DiMOConfig for a text teacher (how many tokens the "
                             "one-step generator writes).")
        width = logit_width(teacher)
        for name, other in ((GENERATOR, generator), (AUXILIARY, auxiliary)):
            if other is None:
                continue
            if args.memory_mode == "lora":
                raise ValueError(f"`{name}` cannot be given with memory_mode='lora': the {name} is a LoRA adapter on "
                                 "the teacher.")
            if logit_width(other) != width:
                raise ValueError(f"`{name}` has {logit_width(other)} logits per position but the teacher has {width}: "
                                 "the generator, auxiliary and teacher must share one vocabulary.")
        if f_divergence is not None and not callable(f_divergence):
            raise TypeError(f"`f_divergence` must be a callable f(u), got {type(f_divergence).__name__}.")
        self.divergence: str | FFunction = f_divergence if f_divergence is not None else args.divergence
        self.text_encoder = text_encoder.eval().requires_grad_(False) if text_encoder is not None else None
        self.null_text_input_ids = null_text_input_ids
        self.sample_metric_fn = sample_metric_fn

        teacher.eval().requires_grad_(False)
        if args.memory_mode == "full":
            self.teacher = teacher
            model = generator if generator is not None else copy.deepcopy(teacher)
            self.auxiliary = auxiliary if auxiliary is not None else copy.deepcopy(teacher)
            for module in (model, self.auxiliary):
                module.requires_grad_(True)
                self._freeze_io_layers(module, args)
        else:
            lora = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
                              target_modules=args.lora_target_modules or _default_lora_targets(teacher))
            model = get_peft_model(teacher, lora, adapter_name=GENERATOR)
            model.add_adapter(AUXILIARY, lora)
            model.set_adapter(GENERATOR)
            self.teacher = None  # the base model with adapters disabled
            self.auxiliary = None  # the `auxiliary` adapter
        self.initial_state = args.initial_state(
            vocab_size=self._real_vocab_size(teacher),
            excluded_token_ids=self._excluded_ids(teacher, processing_class, excluded_token_ids))
        pad_id = getattr(getattr(teacher, "config", None), "pad_token_id", None)
        super().__init__(model=model, args=args, data_collator=data_collator or DiMOConditionCollator(pad_id),
                         train_dataset=train_dataset, eval_dataset=eval_dataset, processing_class=processing_class,
                         callbacks=list(callbacks or []) + [_EMAUpdate(self)], **kwargs)
        device = self.args.device
        if self.teacher is not None:
            self.teacher.to(device)
            self.auxiliary.to(device)
        if self.text_encoder is not None:
            self.text_encoder.to(device)
        self.ema = ParameterEMA(self._trainable(GENERATOR), args.ema_decay) if args.ema_decay > 0 else None
        self.auxiliary_optimizer: torch.optim.Optimizer | None = None
        self._auxiliary_wrapped: nn.Module | None = None
        self._pending: tuple | None = None
        self._metrics: dict[str, list[float]] = defaultdict(list)

    # ------------------------------------------------------------------ set-up helpers
    @staticmethod
    def _freeze_io_layers(model: nn.Module, args: DiMOConfig) -> None:
        layers = []
        if args.freeze_input_embeddings:
            layers.append(model.get_input_embeddings())
        if args.freeze_output_embeddings:
            layers.append(model.get_output_embeddings())
        for layer in layers:
            layer.requires_grad_(False)

    @staticmethod
    def _real_vocab_size(teacher: nn.Module) -> int:
        config = teacher.config
        return int(getattr(config, "codebook_size", None) or getattr(config, "vocab_size", None)
                   or logit_width(teacher))

    def _excluded_ids(self, teacher: nn.Module, processing_class, given: list[int] | None) -> list[int]:
        if given is not None:
            return list(given)
        if self.is_image:
            return []
        if processing_class is not None and hasattr(processing_class, "all_special_ids"):
            return list(processing_class.all_special_ids)
        config = teacher.config
        return [i for i in (config.pad_token_id, config.bos_token_id, config.eos_token_id) if i is not None]

    def _trainable(self, role: str) -> dict[str, nn.Parameter]:
        """The trainable parameters of the generator or the auxiliary, by name."""
        if self.args.memory_mode == "lora":
            marker = f".{role}."
            return {n: p for n, p in self.model.named_parameters() if marker in n and "lora_" in n}
        module = self.model if role == GENERATOR else self.auxiliary
        return {n: p for n, p in module.named_parameters() if p.requires_grad}

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """The generator's optimizer (the Trainer's) and the auxiliary's AdamW with ``auxiliary_learning_rate``."""
        optimizer = super().create_optimizer(model)
        if self.auxiliary_optimizer is None:
            args: DiMOConfig = self.args
            params = list(self._trainable(AUXILIARY).values())
            self.auxiliary_optimizer = torch.optim.AdamW(
                params, lr=args.auxiliary_learning_rate or args.learning_rate, betas=(args.adam_beta1, args.adam_beta2),
                eps=args.adam_epsilon, weight_decay=args.weight_decay)
            if self.auxiliary is not None:
                self._auxiliary_wrapped = self.accelerator.prepare_model(self.auxiliary)
        return optimizer

    # ------------------------------------------------------------------ the three models
    @property
    def _peft(self) -> PeftModel:
        return self.accelerator.unwrap_model(self.model)

    def _call(self, model: nn.Module, ids: torch.LongTensor, cond: _Conditions, null: bool = False) -> torch.Tensor:
        kwargs = dict(cond.null_kwargs if null else cond.kwargs)
        if self.is_image and getattr(self._base_config, "use_mask_ratio", False):
            kwargs["mask_ratio"] = (ids == self.mask_token_id).float().mean(1)
        return denoise(model, ids, cond.attention_mask, **kwargs)

    @property
    def _base_config(self):
        model = self.accelerator.unwrap_model(self.model)
        return model.get_base_model().config if isinstance(model, PeftModel) else model.config

    @torch.no_grad()
    def teacher_logits(self, ids: torch.LongTensor, cond: _Conditions, generated: torch.BoolTensor) -> torch.Tensor:
        """z_φ(x̃_t, c) with classifier-free guidance uncond + w·(cond − uncond) when ``teacher_cfg_scale ≠ 1``."""
        scale = self.args.teacher_cfg_scale

        def run(model: nn.Module) -> torch.Tensor:
            conditional = self._call(model, ids, cond)
            if scale == 1.0:
                return conditional
            if self.is_image:
                unconditional = self._call(model, ids, cond, null=True)
            else:  # LLaDA's unsupervised CFG: the prompt is masked
                unconditional = self._call(model, ids.masked_fill(~generated, self.mask_token_id), cond)
            return unconditional + scale * (conditional - unconditional)

        if self.teacher is not None:
            return run(self.teacher)
        with self._peft.disable_adapter():
            return run(self._peft)

    @torch.no_grad()
    def auxiliary_logits(self, ids: torch.LongTensor, cond: _Conditions) -> torch.Tensor:
        """z_ψ(x̃_t, c), without gradients."""
        if self.auxiliary is not None:
            return self._call(self.auxiliary, ids, cond)
        peft = self._peft
        peft.set_adapter(AUXILIARY)
        try:
            return self._call(peft, ids, cond)
        finally:
            peft.set_adapter(GENERATOR)

    # ------------------------------------------------------------------ conditions and states
    def _conditions(self, inputs: dict[str, torch.Tensor]) -> _Conditions:
        device = self.args.device
        if self.is_image:
            config = self._base_config
            if "class_labels" in inputs:
                labels = inputs["class_labels"].to(device).long()
                null = torch.full_like(labels, config.num_classes)
                return _Conditions(len(labels), None, None, {"class_labels": labels}, {"class_labels": null})
            if "text_input_ids" not in inputs:
                raise ValueError("an image teacher needs `class_labels` or `text_input_ids` conditions.")
            if self.text_encoder is None or self.null_text_input_ids is None:
                raise ValueError("text-conditioned image distillation needs `text_encoder` and `null_text_input_ids`.")
            captions = inputs["text_input_ids"].to(device)
            null_ids = self.null_text_input_ids.to(device).expand(len(captions), -1)
            with torch.no_grad():
                outputs = [self.text_encoder(ids, output_hidden_states=True, return_dict=True)
                           for ids in (captions, null_ids)]
            kwargs, null_kwargs = ({"pooled_text_emb": o.text_embeds, "encoder_hidden_states": o.hidden_states[-2]}
                                   for o in outputs)
            return _Conditions(len(captions), None, None, kwargs, null_kwargs)
        if "input_ids" not in inputs:
            raise ValueError("a text teacher needs `input_ids` conditions (prompts; [BOS] for unconditional text).")
        check_token_ids("input_ids", inputs["input_ids"], self.initial_state.vocab_size, dim=2,
                        what="teacher's vocabulary")
        prefix = inputs["input_ids"].to(device)
        attention = inputs.get("attention_mask")
        if attention is not None:
            ones = attention.new_ones(len(prefix), self.args.generation_length)
            attention = torch.cat([attention.to(device), ones.to(device)], dim=1)
        return _Conditions(len(prefix), prefix, attention, {}, None)

    def _generated_length(self) -> int:
        if self.is_image:
            return int(self._base_config.sample_size) ** 2
        return int(self.args.generation_length)

    def draw_initial_state(self, cond: _Conditions) -> tuple[torch.LongTensor, torch.BoolTensor]:
        """x_init ~ p_init behind the prompt (Algorithm 1, line 4) and the mask of generated positions."""
        body = self.initial_state.sample(cond.batch, self._generated_length(), self.mask_token_id, self.args.device)
        if cond.prefix is None:
            return body, torch.ones_like(body, dtype=torch.bool)
        ids = torch.cat([cond.prefix, body], dim=1)
        generated = torch.zeros_like(ids, dtype=torch.bool)
        generated[:, cond.prefix.shape[1]:] = True
        return ids, generated

    def remask(self, x0: torch.LongTensor, generated: torch.BoolTensor
               ) -> tuple[torch.LongTensor, torch.BoolTensor, torch.Tensor]:
        """x̃_t ~ q_t|0(· | x0): per row a ratio r_t from ``remask_schedule``, every generated position masked
        independently with probability r_t (at least one per row). Returns (x̃_t, masked, r_t)."""
        batch = x0.shape[0]
        u = torch.rand(batch, 1, device=x0.device)
        ratio = mask_ratio_schedule(u, _SCHEDULE_NAMES[self.args.remask_schedule]).clamp(0.0, 1.0)
        scores = torch.rand(x0.shape, device=x0.device).masked_fill(~generated, 2.0)
        masked = (scores < ratio) & generated
        masked |= (scores == scores.min(dim=1, keepdim=True).values) & generated
        return x0.masked_fill(masked, self.mask_token_id), masked, ratio.view(-1)

    def _weights(self, ratio: torch.Tensor, length: int) -> torch.Tensor | None:
        if self.args.loss_weighting == "constant":
            return None
        if self.args.loss_weighting == "mask_ratio":
            return ratio
        return 1.0 / ratio.clamp_min(1.0 / length)

    def _suppressed(self, width: int, device: torch.device) -> torch.BoolTensor:
        """Logits the generator never samples: the mask token, excluded ids and padded rows past the vocabulary."""
        suppressed = torch.zeros(width, dtype=torch.bool, device=device)
        suppressed[self.initial_state.vocab_size:] = True
        special = [i for i in [self.mask_token_id, *self.initial_state.excluded_token_ids] if i < width]
        suppressed[special] = True
        return suppressed

    def sample_tokens(self, logits: torch.Tensor, x_init: torch.LongTensor, generated: torch.BoolTensor,
                      temperature: float) -> torch.LongTensor:
        """x_θ ~ softmax(z_θ / τ) at the generated positions (Algorithm 1, line 6); the prompt stays."""
        logits = (logits.detach().float() / temperature).masked_fill(
            self._suppressed(logits.shape[-1], logits.device), float("-inf"))
        samples = torch.multinomial(logits.softmax(-1).view(-1, logits.shape[-1]), 1).view(x_init.shape)
        return torch.where(generated, samples, x_init)

    def generator_forward(self, model: nn.Module, cond: _Conditions) -> tuple[torch.Tensor, torch.LongTensor,
                                                                              torch.BoolTensor]:
        """(z_θ(x_init, c), x_init, generated positions), with the embedding perturbation of p_init."""
        x_init, generated = self.draw_initial_state(cond)
        with embedding_noise(model, self.initial_state.embedding_noise_std, generated):
            logits = self._call(model, x_init, cond)
        return logits, x_init, generated

    # ------------------------------------------------------------------ the losses
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The generator loss of eq. 7 (Algorithm 1, lines 4–10). Its value is the weighted divergence
        D(p_φ ‖ p_ψ)(x̃_t) and its gradient with respect to z_θ(x_init) is w(t)·∇_{z_ψ} D at the masked positions."""
        args: DiMOConfig = self.args
        cond = self._conditions(inputs)
        logits, x_init, generated = self.generator_forward(model, cond)
        x_theta = self.sample_tokens(logits, x_init, generated, args.generator_temperature)
        noisy, masked, ratio = self.remask(x_theta, generated)
        teacher = self.teacher_logits(noisy, cond, generated)
        auxiliary = self.auxiliary_logits(noisy, cond)
        gradient = divergence_gradient(teacher, auxiliary, self.divergence, args.jeffreys_beta)
        weights = self._weights(ratio, int(generated.sum(1).max()))
        surrogate = surrogate_loss(logits, gradient, masked, weights, args.loss_normalization)
        with torch.no_grad():
            per_token = token_divergence(teacher, auxiliary, self.divergence, args.jeffreys_beta)
            value = ((per_token * masked).flatten(1).sum(1)
                     * row_scale(masked, weights, args.loss_normalization)).sum()
            self._metrics["divergence_per_token"].append(float(per_token[masked].mean()))
            self._metrics["mask_ratio"].append(float(ratio.mean()))
        self._pending = (x_theta.detach(), generated, cond)
        loss = value + surrogate - surrogate.detach()
        return (loss, {"logits": logits}) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        """The generator step (the Trainer's backward of eq. 7), then ``auxiliary_updates_per_step`` auxiliary
        updates (Algorithm 1, lines 12–13)."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        x_theta, generated, cond = self._pending
        self._pending = None
        for _ in range(self.args.auxiliary_updates_per_step):
            self._metrics["auxiliary_loss"].append(self.auxiliary_step(x_theta, generated, cond))
        return loss

    def auxiliary_step(self, x_theta: torch.LongTensor, generated: torch.BoolTensor, cond: _Conditions) -> float:
        """One update of ψ: masked-token cross-entropy (label-smoothed) of the auxiliary on x̃_t' ~ q(·|x_θ)."""
        args: DiMOConfig = self.args
        noisy, masked, _ = self.remask(x_theta, generated)
        lora = self.auxiliary is None
        if lora:
            model = self._peft
            model.set_adapter(AUXILIARY)
        else:
            model = self._auxiliary_wrapped if self._auxiliary_wrapped is not None else self.auxiliary
            model.train()
        try:
            logits = self._call(model, noisy, cond)
            loss = F.cross_entropy(logits[masked].float(), x_theta[masked],
                                   label_smoothing=args.auxiliary_label_smoothing)
            loss.backward()
            params = list(self._trainable(AUXILIARY).values())
            if lora and self.accelerator.num_processes > 1:  # the adapter runs outside DDP: average its gradients
                for p in params:
                    if p.grad is not None:
                        torch.distributed.all_reduce(p.grad, op=torch.distributed.ReduceOp.AVG)
            if args.max_grad_norm and args.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(params, args.max_grad_norm)
            self.auxiliary_optimizer.step()
            self.auxiliary_optimizer.zero_grad(set_to_none=True)
        finally:
            if lora:
                model.set_adapter(GENERATOR)
        return float(loss.detach())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds the mean divergence per masked token, mask ratio and auxiliary loss since the last log."""
        if "loss" in logs and self._metrics:
            logs.update({k: sum(v) / len(v) for k, v in self._metrics.items() if v})
            self._metrics.clear()
        super().log(logs, start_time)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def sample(self, inputs: dict[str, torch.Tensor], use_ema: bool = True) -> torch.LongTensor:
        """One-step samples of the current generator (EMA weights when available) for a batch of conditions:
        the generated tokens, shape (batch, length)."""
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        cond = self._conditions(inputs)
        swap = self.ema.swapped() if (use_ema and self.ema is not None) else contextlib.nullcontext()
        with swap:
            logits, x_init, generated = self.generator_forward(model, cond)
        model.train(was_training)
        tokens = self.sample_tokens(logits, x_init, generated, self.args.generator_temperature)
        return tokens[generated].view(cond.batch, -1)

    @torch.no_grad()
    def _default_sample_metrics(self, samples: torch.LongTensor, inputs: dict[str, torch.Tensor]) -> dict[str, float]:
        """Teacher pseudo-NLL: the teacher's cross-entropy on half of the sample's tokens (a fixed random half)
        given the rest; and the mean per-sample unigram entropy."""
        cond = self._conditions(inputs)
        ids = samples if cond.prefix is None else torch.cat([cond.prefix, samples], dim=1)
        generated = torch.zeros_like(ids, dtype=torch.bool)
        generated[:, ids.shape[1] - samples.shape[1]:] = True
        gen = torch.Generator().manual_seed(0)
        masked = (torch.rand(ids.shape, generator=gen) < 0.5).to(ids.device) & generated
        logits = self.teacher_logits(ids.masked_fill(masked, self.mask_token_id), cond, generated)
        nll = F.cross_entropy(logits[masked].float(), ids[masked])
        counts = F.one_hot(samples, logit_width(self._peft if self.teacher is None else self.teacher)).sum(1).float()
        probs = counts / counts.sum(-1, keepdim=True)
        entropy = -(probs * probs.clamp_min(1e-30).log()).sum(-1).mean()
        return {"teacher_pseudo_nll": float(nll), "unigram_entropy": float(entropy)}

    def evaluate(self, eval_dataset=None, ignore_keys=None, metric_key_prefix: str = "eval") -> dict[str, float]:
        """One-step samples for ``eval_num_samples`` conditions of the eval set, scored by ``sample_metric_fn``."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if dataset is None:
            raise ValueError("evaluation needs an `eval_dataset` of conditions.")
        count = min(self.args.eval_num_samples, len(dataset))
        inputs = self.data_collator([dataset[i] for i in range(count)])
        samples = self.sample(inputs)
        metric_fn = self.sample_metric_fn or self._default_sample_metrics
        metrics = {f"{metric_key_prefix}_{k}": float(v) for k, v in metric_fn(samples, inputs).items()}
        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics

    # ------------------------------------------------------------------ checkpoints
    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        """The Trainer's optimizer/scheduler, plus the auxiliary model and optimizer, the EMA and (LoRA mode) the
        generator adapter — everything an exact resume needs."""
        super()._save_optimizer_and_scheduler(output_dir)
        if not self.args.should_save:
            return
        state = {f"{AUXILIARY}.{n}": p.detach().contiguous() for n, p in self._trainable(AUXILIARY).items()}
        if self.args.memory_mode == "lora":
            state.update({f"{GENERATOR}.{n}": p.detach().contiguous() for n, p in self._trainable(GENERATOR).items()})
        if self.ema is not None:
            state.update({f"ema.{n}": t for n, t in self.ema.state_dict().items()})
        # each file written to a temporary and renamed (removed if the write fails); the checkpoint folder as a whole
        # is swapped in atomically by AtomicCheckpointMixin
        state = {k: v.cpu() for k, v in state.items()}
        replace_file(os.path.join(output_dir, STATE_FILE), lambda tmp: save_file(state, tmp))
        if self.auxiliary_optimizer is not None:
            replace_file(os.path.join(output_dir, AUXILIARY_OPTIMIZER_FILE),
                         lambda tmp: torch.save(self.auxiliary_optimizer.state_dict(), tmp))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        if self.args.memory_mode == "lora":
            return  # the adapters come back with the rest of the Di[M]O state in _load_optimizer_and_scheduler
        super()._load_from_checkpoint(resume_from_checkpoint, model)

    @torch.no_grad()
    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, STATE_FILE)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{checkpoint} has no {STATE_FILE}: it was not written by DiMOTrainer.")
        state = load_file(path)
        roles = [AUXILIARY] + ([GENERATOR] if self.args.memory_mode == "lora" else [])
        for role in roles:
            for name, param in self._trainable(role).items():
                param.copy_(state[f"{role}.{name}"].to(param.device))
        if self.ema is not None:
            self.ema.load_state_dict({k[len("ema."):]: v for k, v in state.items() if k.startswith("ema.")})
        optimizer_path = os.path.join(checkpoint, AUXILIARY_OPTIMIZER_FILE)
        if self.auxiliary_optimizer is not None:
            if os.path.isfile(optimizer_path):
                self.auxiliary_optimizer.load_state_dict(
                    torch.load(optimizer_path, map_location=self.args.device, weights_only=True))
            else:
                refuse_or_warn_missing_state(checkpoint, [AUXILIARY_OPTIMIZER_FILE], self.args,
                                             "the auxiliary model's optimizer")

    # ------------------------------------------------------------------ the distilled generator
    @torch.no_grad()
    def get_generator(self, use_ema: bool = True) -> nn.Module:
        """A standalone one-step generator: a copy of θ (EMA weights when available; LoRA merged into the base) whose
        config records the initial-state settings and, for text, a one-step generation config."""
        model = self.accelerator.unwrap_model(self.model)
        swap = self.ema.swapped() if (use_ema and self.ema is not None) else contextlib.nullcontext()
        with swap:
            student = copy.deepcopy(model)
        if isinstance(student, PeftModel):
            student.set_adapter(GENERATOR)
            student.delete_adapter(AUXILIARY)
            student = student.merge_and_unload()
        student.requires_grad_(False).eval()
        settings = self.initial_state.to_dict()
        if isinstance(student, PreTrainedModel):
            student.config.dimo_initial_state = settings
            if getattr(student, "generation_config", None) is not None and hasattr(student.generation_config, "steps"):
                student.generation_config.steps = 1
                student.generation_config.block_length = None
                student.generation_config.max_new_tokens = self.args.generation_length
                student.generation_config.temperature = self.args.generator_temperature
                student.generation_config.do_sample = True
        else:
            student.register_to_config(dimo_initial_state=settings)
        return student

    def save_generator(self, output_dir: str | os.PathLike, use_ema: bool = True) -> nn.Module:
        """Save [`get_generator`] (and the tokenizer, if any) atomically; ``from_pretrained`` loads it back."""
        student = self.get_generator(use_ema)
        extra = [self.processing_class] if self.processing_class is not None else []
        save_atomically(output_dir, student, *extra)
        return student


__all__ = ["DiMOTrainer", "logit_width"]
