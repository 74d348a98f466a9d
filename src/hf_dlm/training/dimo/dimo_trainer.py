"""``DiMOTrainer``: Di[M]O — Distilling Masked Diffusion Models into One-step Generator (Zhu, Wang, Lathuilière,
Kalogeiton, 2025, arXiv:2503.15457), Algorithm 1, as a ``transformers.Trainer``.

One optimisation step, for a batch of conditions c:

1. x_init ~ p_init (a partly masked random sequence, Sec. 4.3); generator logits z_θ(x_init, c) (line 5);
2. x_θ ~ softmax(z_θ / τ) at every generated position (line 6);
3. t, x̃_t ~ q_t|0(· | x_θ) (line 8); teacher and auxiliary logits z_φ(x̃_t), z_ψ(x̃_t) without gradients (line 9);
4. g = ∇_{z_ψ} D(p_φ ‖ p_ψ) at the masked positions of x̃_t, and the generator loss whose gradient with respect to
   z_θ(x_init) is w(t)·g there (eq. 7, line 10) — the Trainer's optimizer steps θ;
5. the auxiliary model ψ is fitted to the generator's samples with the masked-diffusion cross-entropy on a fresh
   x̃_t' (lines 12–13) by a second optimizer owned by this trainer — on the step's own x_θ
   (``auxiliary_sample="reuse"``, Algorithm 1) or on a new x_init and generator sample drawn after the generator
   update (``"fresh"``, the authors' code), optionally mixed with the authors' soft loss (``alpha_fake``).

The switches that make a step exactly the authors' code (``embedding_noise_mode``, ``remask_mode``,
``clamp_min_one_mask``, ``auxiliary_sample``, ``sample_mask_tokens``, ``alpha_fake``) are described in
[`DiMOConfig`]; ``DiMOConfig.from_preset`` turns them all on.

The teacher is frozen. ``memory_mode="full"`` keeps teacher, generator and auxiliary as three copies (as the paper);
``memory_mode="lora"`` keeps one frozen base model — the teacher, reached with ``disable_adapter()`` — carrying two
PEFT LoRA adapters, ``generator`` and ``auxiliary``. Every model is reached through the denoiser contract
(``hf_dlm.denoiser``): its conditions, its guidance and its widths, so text (LLaDA/Dream) and image
(``MaskedImageTransformer``) teachers share this code, and the remasking q_t|0 is the MaskGIT scheduler's
``add_noise``.
"""

from __future__ import annotations

import contextlib
import copy
import os
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import Trainer, TrainerCallback
from transformers.utils import logging

from ..._io import AtomicCheckpointMixin, replace_file, save_atomically
from ..._training_guards import ResumeGuardMixin, check_token_ids, refuse_or_warn_missing_state
from ...denoiser import (DenoiserConditions, build_conditions, conditional_denoise, fixed_length, get_mask_token_id,
                         logit_width, special_token_ids, token_vocab_size)
from ...generation.initial_state import embedding_noise
from ...schedulers.scheduling_maskgit import MaskGITScheduler
from .dimo_config import DiMOConfig
from .data import DiMOConditionCollator
from .divergences import FFunction, divergence_gradient, row_scale, surrogate_loss, token_divergence
from .ema import ParameterEMA

logger = logging.get_logger(__name__)

GENERATOR, AUXILIARY = "generator", "auxiliary"
STATE_FILE = "dimo_state.safetensors"
AUXILIARY_OPTIMIZER_FILE = "auxiliary_optimizer.pt"


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
        self.generation_length = fixed_length(teacher) or args.generation_length
        if self.generation_length is None:
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
            vocab_size=token_vocab_size(teacher),
            excluded_token_ids=list(excluded_token_ids) if excluded_token_ids is not None
            else special_token_ids(teacher, processing_class))
        self.noise_scheduler = MaskGITScheduler(mask_token_id=self.mask_token_id, masking_schedule=args.remask_schedule)
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
        self._pending_logits: torch.Tensor | None = None
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

    @torch.no_grad()
    def teacher_logits(self, ids: torch.LongTensor, cond: DenoiserConditions) -> torch.Tensor:
        """z_φ(x̃_t, c), with classifier-free guidance uncond + w·(cond − uncond) when ``teacher_cfg_scale`` w ≠ 1
        (the null condition of ``hf_dlm.denoiser``: the null class or caption, or for text the prompt masked)."""
        teacher = self.teacher if self.teacher is not None else self._peft
        adapters = self._peft.disable_adapter() if self.teacher is None else contextlib.nullcontext()
        with adapters:
            return conditional_denoise(teacher, ids, cond, self.args.teacher_cfg_scale, batched=False)

    @torch.no_grad()
    def auxiliary_logits(self, ids: torch.LongTensor, cond: DenoiserConditions) -> torch.Tensor:
        """z_ψ(x̃_t, c), without gradients."""
        if self.auxiliary is not None:
            return conditional_denoise(self.auxiliary, ids, cond)
        peft = self._peft
        peft.set_adapter(AUXILIARY)
        try:
            return conditional_denoise(peft, ids, cond)
        finally:
            peft.set_adapter(GENERATOR)

    # ------------------------------------------------------------------ conditions and states
    def _conditions(self, inputs: dict[str, torch.Tensor]) -> DenoiserConditions:
        """The batch's conditions c (prompts, class labels or captions) and, for teacher CFG, their null."""
        if "input_ids" in inputs:
            check_token_ids("input_ids", inputs["input_ids"], self.initial_state.vocab_size, dim=2,
                            what="teacher's vocabulary")
        if "text_input_ids" in inputs and (self.text_encoder is None or self.null_text_input_ids is None):
            raise ValueError("caption conditions need `text_encoder` and `null_text_input_ids` (the empty caption).")
        with torch.no_grad():
            return build_conditions(
                self.model, prompt_ids=inputs.get("input_ids"), attention_mask=inputs.get("attention_mask"),
                generation_length=self.generation_length, class_labels=inputs.get("class_labels"),
                caption_ids=inputs.get("text_input_ids"), text_encoder=self.text_encoder,
                null_caption_ids=self.null_text_input_ids, with_null=self.args.teacher_cfg_scale != 1.0,
                device=self.args.device)

    def draw_initial_state(self, cond: DenoiserConditions) -> tuple[torch.LongTensor, torch.BoolTensor]:
        """x_init ~ p_init behind the prompt (Algorithm 1, line 4) and the mask of generated positions."""
        body = self.initial_state.sample(cond.batch_size, cond.generated_length, self.mask_token_id, self.args.device)
        if cond.prompt_ids is None:
            return body, torch.ones_like(body, dtype=torch.bool)
        ids = torch.cat([cond.prompt_ids, body], dim=1)
        generated = torch.zeros_like(ids, dtype=torch.bool)
        generated[:, cond.prompt_length:] = True
        return ids, generated

    def remask(self, x0: torch.LongTensor, generated: torch.BoolTensor
               ) -> tuple[torch.LongTensor, torch.BoolTensor, torch.Tensor]:
        """x̃_t ~ q_t|0(· | x0): per row a ratio r_t from ``remask_schedule``; with ``remask_mode="independent"``
        every generated position masked independently with probability r_t (at least one per row), with
        ``"exact"`` exactly max(1, round(L·r_t)) of the row's L generated positions, chosen uniformly (the authors'
        ``get_mask_code``). Returns (x̃_t, masked, r_t)."""
        if self.args.remask_mode == "independent":
            return self.noise_scheduler.add_noise(x0, positions=generated, return_mask=True)
        ratio = self.noise_scheduler.schedule.draw(len(x0), x0.device).reshape(-1)
        length = generated.sum(1)
        count = torch.minimum((length * ratio).round().clamp_min(1), length).long()
        scores = torch.rand(x0.shape, device=x0.device).masked_fill(~generated, 2.0)
        rank = scores.argsort(dim=1).argsort(dim=1)  # 0 for the lowest score of a row
        masked = (rank < count.unsqueeze(1)) & generated
        return x0.masked_fill(masked, self.mask_token_id), masked, ratio

    def _weights(self, ratio: torch.Tensor, length: int) -> torch.Tensor | None:
        if self.args.loss_weighting == "constant":
            return None
        if self.args.loss_weighting == "mask_ratio":
            return ratio
        return 1.0 / ratio.clamp_min(1.0 / length)

    def _suppressed(self, width: int, device: torch.device, allow_mask: bool = False) -> torch.BoolTensor:
        """Logits the generator never samples: the mask token (unless ``allow_mask``), excluded ids and padded rows
        past the vocabulary."""
        suppressed = torch.zeros(width, dtype=torch.bool, device=device)
        suppressed[self.initial_state.vocab_size:] = True
        special = [i for i in [self.mask_token_id, *self.initial_state.excluded_token_ids] if i < width]
        suppressed[special] = True
        if allow_mask and self.mask_token_id < width:
            suppressed[self.mask_token_id] = False
        return suppressed

    def sample_tokens(self, logits: torch.Tensor, x_init: torch.LongTensor, generated: torch.BoolTensor,
                      temperature: float, allow_mask: bool = False) -> torch.LongTensor:
        """x_θ ~ softmax(z_θ / τ) at the generated positions (Algorithm 1, line 6); the prompt stays. The mask token
        is drawn only with ``allow_mask`` (training with ``sample_mask_tokens``, the authors' sampler)."""
        logits = (logits.detach().float() / temperature).masked_fill(
            self._suppressed(logits.shape[-1], logits.device, allow_mask), float("-inf"))
        samples = torch.multinomial(logits.softmax(-1).view(-1, logits.shape[-1]), 1).view(x_init.shape)
        return torch.where(generated, samples, x_init)

    def generator_forward(self, model: nn.Module, cond: DenoiserConditions) -> tuple[torch.Tensor, torch.LongTensor,
                                                                              torch.BoolTensor]:
        """(z_θ(x_init, c), x_init, generated positions), with the embedding perturbation of p_init."""
        x_init, generated = self.draw_initial_state(cond)
        with embedding_noise(model, self.initial_state.embedding_noise_std, generated,
                             mode=self.initial_state.embedding_noise_mode):
            logits = conditional_denoise(model, x_init, cond)
        return logits, x_init, generated

    # ------------------------------------------------------------------ the losses
    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        """The generator loss of eq. 7 (Algorithm 1, lines 4–10). Its value is the weighted divergence
        D(p_φ ‖ p_ψ)(x̃_t) and its gradient with respect to z_θ(x_init) is w(t)·∇_{z_ψ} D at the masked positions."""
        args: DiMOConfig = self.args
        cond = self._conditions(inputs)
        logits, x_init, generated = self.generator_forward(model, cond)
        x_theta = self.sample_tokens(logits, x_init, generated, args.generator_temperature, args.sample_mask_tokens)
        noisy, masked, ratio = self.remask(x_theta, generated)
        teacher = self.teacher_logits(noisy, cond)
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
        self._pending_logits = logits.detach() if args.alpha_fake > 0 else None
        loss = value + surrogate - surrogate.detach()
        return (loss, {"logits": logits}) if return_outputs else loss

    def training_step(self, model, inputs, num_items_in_batch=None) -> torch.Tensor:
        """The generator step (the Trainer's backward of eq. 7), then ``auxiliary_updates_per_step`` auxiliary
        updates (Algorithm 1, lines 12–13)."""
        loss = super().training_step(model, inputs, num_items_in_batch)
        x_theta, generated, cond = self._pending
        logits = self._pending_logits
        self._pending = self._pending_logits = None
        for _ in range(self.args.auxiliary_updates_per_step):
            if self.args.auxiliary_sample == "fresh":
                x_theta, generated, logits = self.fresh_generator_sample(cond)
            self._metrics["auxiliary_loss"].append(self.auxiliary_step(x_theta, generated, cond, logits))
        return loss

    @torch.no_grad()
    def fresh_generator_sample(self, cond: DenoiserConditions
                               ) -> tuple[torch.LongTensor, torch.BoolTensor, torch.Tensor | None]:
        """A new x_init and generator sample x_θ for the auxiliary update (``auxiliary_sample="fresh"``, the authors'
        code), drawn without gradients from the generator as it is after its update. Returns (x_θ, generated
        positions, generator logits — None unless the soft auxiliary loss needs them)."""
        args: DiMOConfig = self.args
        model = self.accelerator.unwrap_model(self.model)
        logits, x_init, generated = self.generator_forward(model, cond)
        x_theta = self.sample_tokens(logits, x_init, generated, args.generator_temperature, args.sample_mask_tokens)
        return x_theta, generated, (logits.detach() if args.alpha_fake > 0 else None)

    def auxiliary_loss(self, logits: torch.Tensor, x_theta: torch.LongTensor, masked: torch.BoolTensor,
                       generator_logits: torch.Tensor | None = None) -> torch.Tensor:
        """The auxiliary's loss on x̃_t: (1 − α)·hard + α·soft with α = ``alpha_fake``. hard: the label-smoothed
        cross-entropy of z_ψ against x_θ at the masked positions (mean); soft (the authors' code, needs
        ``generator_logits`` z_θ): the mean over masked positions of T²·(1/V)·Σ_v p_v (log p_v − log q_v),
        p = softmax(z_θ/T), q = softmax(z_ψ/T), V the logit width, T = ``auxiliary_soft_temperature``."""
        args: DiMOConfig = self.args
        hard = F.cross_entropy(logits[masked].float(), x_theta[masked], label_smoothing=args.auxiliary_label_smoothing)
        if args.alpha_fake <= 0:
            return hard
        if generator_logits is None:
            raise ValueError("the soft auxiliary loss (alpha_fake > 0) needs the generator logits of x_θ.")
        temperature = args.auxiliary_soft_temperature
        log_q = F.log_softmax(logits[masked].float() / temperature, dim=-1)
        p = F.softmax(generator_logits[masked].float() / temperature, dim=-1)
        soft = (F.kl_div(log_q, p, reduction="none") * temperature ** 2).mean(-1).mean()
        return args.alpha_fake * soft + (1.0 - args.alpha_fake) * hard

    def auxiliary_step(self, x_theta: torch.LongTensor, generated: torch.BoolTensor, cond: DenoiserConditions,
                       generator_logits: torch.Tensor | None = None) -> float:
        """One update of ψ on x̃_t' ~ q(·|x_θ) with [`auxiliary_loss`] (``generator_logits``: z_θ that produced x_θ,
        needed only by the soft loss)."""
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
            logits = conditional_denoise(model, noisy, cond)
            loss = self.auxiliary_loss(logits, x_theta, masked, generator_logits)
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
        return tokens[generated].view(cond.batch_size, -1)

    @torch.no_grad()
    def _default_sample_metrics(self, samples: torch.LongTensor, inputs: dict[str, torch.Tensor]) -> dict[str, float]:
        """Teacher pseudo-NLL: the teacher's cross-entropy on half of the sample's tokens (a fixed random half)
        given the rest; and the mean per-sample unigram entropy."""
        cond = self._conditions(inputs)
        ids = samples if cond.prompt_ids is None else torch.cat([cond.prompt_ids, samples], dim=1)
        generated = torch.zeros_like(ids, dtype=torch.bool)
        generated[:, ids.shape[1] - samples.shape[1]:] = True
        gen = torch.Generator().manual_seed(0)
        masked = (torch.rand(ids.shape, generator=gen) < 0.5).to(ids.device) & generated
        logits = self.teacher_logits(ids.masked_fill(masked, self.mask_token_id), cond)
        nll = F.cross_entropy(logits[masked].float(), ids[masked])
        counts = F.one_hot(samples, logit_width(self.model)).sum(1).float()
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
        self.initial_state.attach_to(student, self.args.generation_length, self.args.generator_temperature)
        return student

    def save_generator(self, output_dir: str | os.PathLike, use_ema: bool = True) -> nn.Module:
        """Save [`get_generator`] (and the tokenizer, if any) atomically; ``from_pretrained`` loads it back."""
        student = self.get_generator(use_ema)
        extra = [self.processing_class] if self.processing_class is not None else []
        save_atomically(output_dir, student, *extra)
        return student


__all__ = ["DiMOTrainer"]
