"""``DiMOConfig``: the knobs of Di[M]O distillation (Zhu et al., 2025) on top of ``TrainingArguments``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..._training_guards import GuardedTrainingArguments, check_choice, check_int, check_real
from ...generation.initial_state import EMBEDDING_NOISE_MODES, TOKEN_DISTRIBUTIONS, DiMOInitialState
from .divergences import DIVERGENCES, LOSS_NORMALIZATIONS

REMASK_SCHEDULES = ("uniform", "cosine", "arccos")
LOSS_WEIGHTINGS = ("constant", "mask_ratio", "inverse_mask_ratio")
MEMORY_MODES = ("full", "lora")
REMASK_MODES = ("independent", "exact")
AUXILIARY_SAMPLES = ("reuse", "fresh")

# transformers ≥ 5 renamed gradient_checkpointing (a deprecated alias now) to activation_checkpointing
_CHECKPOINTING = ("activation_checkpointing"
                  if "activation_checkpointing" in GuardedTrainingArguments.__dataclass_fields__
                  else "gradient_checkpointing")

# The authors' published configurations (yuanzhi-zhu/DiMO, arXiv:2503.15457), field by field. Sources:
#   [MG-yaml]  configs/DIMO_MaskGit.yaml          [MG-sh]  scripts/launch_DIMO_MaskGit.sh
#   [ME-yaml]  configs/DIMO_Meissonic.yaml        [ME-sh]  scripts/launch_DIMO_Meissonic.sh
#   [code]     train_DIMO_MaskGit.py / train_DIMO_Meissonic.py and MaskGit_src|Meissonic_src/transformer.py
# The launch scripts override the yaml's train_batch_size / gradient_accumulation_steps on the command line (one
# GPU, DID=0), so those two come from [*-sh]. distil_loss_type 'Jeffreys_0.' is β = 0, i.e. plain FKL ([code]
# maps β 0 to 'FKL'). Both yamls set alpha_fake 0 (hard auxiliary loss) and fake_rounds 1.
_OFFICIAL_SWITCHES: dict[str, Any] = {
    "embedding_noise_mode": "variance_preserving",  # [code] transformer.py: σ·n + √(1 − σ²)·e
    "remask_mode": "exact",                          # [code] get_mask_code: round(L·r).clamp(min=1) positions
    "clamp_min_one_mask": True,                      # [code] generate_one_step: round(L·r_init).clamp(min=1)
    "auxiliary_sample": "fresh",                     # [code] fake-model loop calls generate_one_step again
    "sample_mask_tokens": True,                      # [code] Categorical over all codebook+1 logits
    "loss_normalization": "sum",                     # [*-yaml] loss_reduction: 'sum'
    "loss_weighting": "constant",                    # [code] weight_factor = 1.
    "divergence": "fkl",                             # [*-yaml] distil_loss_type: 'Jeffreys_0.' (β = 0 → FKL)
    "jeffreys_beta": 0.0,                            # [*-yaml] the β of 'Jeffreys_0.'
    "generator_temperature": 1.0,                    # [*-yaml] gen_temp: 1.
    "auxiliary_label_smoothing": 0.1,                # [code] F.cross_entropy(..., label_smoothing=0.1)
    "auxiliary_updates_per_step": 1,                 # [*-yaml] fake_rounds: 1
    "alpha_fake": 0.0,                               # [*-yaml] alpha_fake: 0.  (0 for hard loss)
    "auxiliary_soft_temperature": 1.0,               # [*-yaml] temperature_fake: 1.
    "freeze_input_embeddings": True,                 # [*-yaml] fix_emb_layer: True
    "freeze_output_embeddings": False,               # [code] only the input embedding is frozen
    "ema_decay": 0.9999,                             # [*-yaml] ema_decay: 0.9999 (ema_freq 1)
    "max_grad_norm": 1.0,                            # [*-yaml] max_grad_norm: 1. (bf16 → clipped in [code])
    "lr_scheduler_type": "constant_with_warmup",     # [*-yaml] lr_scheduler_type
    "warmup_steps": 100,                             # [*-yaml] lr_warmup_steps: 100
    "adam_beta1": 0.9,                               # [*-yaml] adam_beta1
    "adam_beta2": 0.999,                             # [*-yaml] adam_beta2
    "weight_decay": 0.0,                             # [*-yaml] adam_weight_decay: 0. (optimizer_type 'adam')
    "bf16": True,                                    # [*-yaml] mixed_precision: 'bf16'
}

PRESETS: dict[str, dict[str, Any]] = {
    # Class-conditional MaskGIT on ImageNet 256 (paper Sec. 5.1).
    "maskgit-imagenet": {
        **_OFFICIAL_SWITCHES,
        "learning_rate": 1e-5,                 # [MG-yaml] generator_lr: 1e-5
        "auxiliary_learning_rate": 1e-5,       # [MG-yaml] fake_lr: 1e-5
        "per_device_train_batch_size": 64,     # [MG-sh] --train_batch_size 64 (yaml default 4)
        "gradient_accumulation_steps": 1,      # [MG-sh] --gradient_accumulation_steps 1
        "max_steps": 50001,                    # [MG-yaml] max_train_steps: 50001
        "r_init": 0.6,                         # [MG-yaml] fixed_ratio: fix_0.6 (paper Sec. 4.3)
        "embedding_noise_std": 0.1,            # [MG-yaml] noise_emb_perturb: fix_0.1
        "remask_schedule": "arccos",           # [MG-yaml] ratio_mode / ratio_mode_fake: 'arccos'
        "teacher_cfg_scale": 2.0,              # [MG-yaml] true_cfg: 2.0
        "seed": 3407,                          # [MG-yaml] global_seed: 3407
        _CHECKPOINTING: False,                 # [MG-yaml] gradient_checkpointing: false
    },
    # Text-to-image Meissonic at 1024² (paper Sec. 5.2).
    "meissonic": {
        **_OFFICIAL_SWITCHES,
        "learning_rate": 1e-6,                 # [ME-yaml] generator_lr: 1e-6
        "auxiliary_learning_rate": 1e-6,       # [ME-yaml] fake_lr: 1e-6
        "per_device_train_batch_size": 2,      # [ME-sh] --train_batch_size 2 (yaml default 4)
        "gradient_accumulation_steps": 8,      # [ME-sh] --gradient_accumulation_steps 8
        "max_steps": 20000,                    # [ME-yaml] max_train_steps: 20000
        "r_init": 0.5,                         # [ME-yaml] fixed_ratio: 0.5
        "embedding_noise_std": 0.3,            # [ME-yaml] noise_emb_perturb: fix_0.3
        "remask_schedule": "cosine",           # [ME-yaml] ratio_mode / ratio_mode_fake: 'cosine'
        "teacher_cfg_scale": 4.0,              # [ME-yaml] true_cfg: 4.
        "seed": 42,                            # [ME-yaml] global_seed: 42
        _CHECKPOINTING: True,                  # [ME-yaml] gradient_checkpointing: true
    },
}


@dataclass
class DiMOConfig(GuardedTrainingArguments):
    """Training arguments of [`DiMOTrainer`]. ``learning_rate`` is the generator's; the defaults of the method's
    fields follow the authors' MaskGIT configuration where it has one (r_init 0.6, arccos remasking, label
    smoothing 0.1, loss summed over tokens). Exceptions, each named by a field whose help says which value is the
    authors': ``teacher_cfg_scale`` defaults to 1 (no guidance — text teachers are run unguided) where the authors'
    MaskGIT setting is 2; and the implementation switches ``embedding_noise_mode``, ``remask_mode``,
    ``clamp_min_one_mask``, ``auxiliary_sample``, ``sample_mask_tokens`` and ``alpha_fake`` keep this project's
    original behaviour by default so that recorded runs and saved configs reproduce. ``from_preset`` sets all of
    them to the authors' values together with their published hyper-parameters.

    Every field is checked at construction — type, finiteness and range — and refused with a ``TypeError`` /
    ``ValueError`` naming it (see [`GuardedTrainingArguments`] for the optimizer knobs and
    ``restart_optimizer_on_resume``)."""

    divergence: str = field(default="fkl", metadata={
        "help": f"Token-level divergence D(p_teacher‖p_student), one of {DIVERGENCES}; pass `f_divergence=` to "
                "DiMOTrainer for any other differentiable f."})
    jeffreys_beta: float = field(default=0.5, metadata={
        "help": "β of the Jeffreys mixture (1 − β)·FKL + β·RKL (β = 0: FKL, β = 1: RKL)."})
    loss_normalization: str = field(default="sum", metadata={
        "help": f"{LOSS_NORMALIZATIONS}: 'sum' sums the token gradients of a sample and averages over samples (the "
                "official code); 'mean' averages over the masked tokens of a sample first (the paper's 1/L_M, "
                "arXiv:2503.15457)."})
    generation_length: int | None = field(default=None, metadata={
        "help": "Text: number of tokens the generator writes after the prompt. Images: ignored (the token grid)."})
    r_init: float = field(default=0.6, metadata={
        "help": "Fraction of x_init's generated positions that are the mask token (Sec. 4.3)."})
    r_init_max: float | None = field(default=None, metadata={
        "help": "If set, the mask fraction of each batch is drawn uniformly from [r_init, r_init_max]."})
    init_token_distribution: str = field(default="uniform", metadata={
        "help": f"Distribution of x_init's non-mask tokens, one of {TOKEN_DISTRIBUTIONS}."})
    embedding_noise_std: float = field(default=0.0, metadata={
        "help": "σ of the Gaussian perturbation of the generator's input embeddings at the generated positions "
                "(authors: 0.1 MaskGIT, 0.3 Meissonic)."})
    embedding_noise_mode: str = field(default="additive", metadata={
        "help": f"{EMBEDDING_NOISE_MODES}: how the noise n ~ N(0, I) enters the embedding e. 'additive' e + σ·n "
                "(default: this project's original form, kept so that recorded runs and saved generators "
                "reproduce); 'variance_preserving' σ·n + √(1 − σ²)·e is the authors' code (their transformer.py); "
                "σ ≤ 1 then. The difference is 0.5 % of the embedding norm at σ 0.1, 4.6 % at 0.3."})
    clamp_min_one_mask: bool = field(default=False, metadata={
        "help": "x_init masks max(1, round(L·r_init)) positions instead of round(L·r_init). True is the authors' "
                "generate_one_step (.clamp(min=1)); default False keeps the original sampler (identical unless "
                "L·r_init < 0.5). Kept in the initial state, so it is saved with the generator and used at inference."})
    generator_temperature: float = field(default=1.0, metadata={
        "help": "Temperature of sampling x_θ from the generator logits (Algorithm 1, line 6)."})
    remask_schedule: str = field(default="arccos", metadata={
        "help": f"Distribution of the remask ratio r_t of x̃_t ~ q_t|0(·|x_θ), one of {REMASK_SCHEDULES}: r = u, "
                "cos(πu/2) or arccos(u)/(π/2) with u ~ U(0, 1)."})
    loss_weighting: str = field(default="constant", metadata={
        "help": f"w(t) of eq. 7, one of {LOSS_WEIGHTINGS}: 1, r_t or 1/r_t."})
    remask_mode: str = field(default="independent", metadata={
        "help": f"{REMASK_MODES}: how x̃_t ~ q_t|0(·|x_θ) masks at ratio r_t. 'independent' masks each generated "
                "position with probability r_t, at least one per row (default: the original behaviour; the count "
                "varies around L·r_t); 'exact' masks exactly max(1, round(L·r_t)) positions chosen uniformly — the "
                "authors' get_mask_code. Applies to the generator's and the auxiliary's x̃_t."})
    sample_mask_tokens: bool = field(default=False, metadata={
        "help": "(Named in the plural because TrainingArguments.to_dict redacts every field ending in '_token'.) "
                "Whether the generator's training sample x_θ may be the mask token. False (default, the original "
                "behaviour) excludes it, as a clean sample should; True samples over all logits (codebook + 1 for "
                "MaskGIT), as the authors' generate_one_step does. Excluded special ids and padded rows stay "
                "excluded; one-step samples at evaluation never hold the mask token."})
    teacher_cfg_scale: float = field(default=1.0, metadata={
        "help": "Classifier-free guidance w of the teacher: uncond + w·(cond − uncond); 1 (the default) disables it. "
                "Text: the unconditional input masks the prompt (LLaDA's cfg_scale = w − 1); images: the null "
                "condition. The authors use 2 for MaskGIT (true_cfg: 2.0) and 4 for Meissonic; from_preset sets "
                "them. The default stays 1 because text teachers are distilled unguided here."})
    auxiliary_learning_rate: float | None = field(default=None, metadata={
        "help": "Learning rate of the auxiliary model ψ (default: `learning_rate`)."})
    auxiliary_updates_per_step: int = field(default=1, metadata={
        "help": "Auxiliary updates (Algorithm 1, lines 12–13) per generator update, each on a fresh x̃_t'."})
    auxiliary_label_smoothing: float = field(default=0.1, metadata={
        "help": "Label smoothing of the auxiliary model's masked-token cross-entropy (authors: 0.1)."})
    auxiliary_sample: str = field(default="reuse", metadata={
        "help": f"{AUXILIARY_SAMPLES}: what the auxiliary update fits. 'reuse' (default) re-masks the generator "
                "step's own sample x_θ, as Algorithm 1 of the paper/slides does; 'fresh' draws a new x_init and "
                "generator sample (without gradients, after the generator update) for every auxiliary update — the "
                "authors' code. The conditions c of the batch are kept (the authors' MaskGIT code also redraws the "
                "class labels)."})
    alpha_fake: float = field(default=0.0, metadata={
        "help": "Weight α of the authors' soft auxiliary loss: loss_ψ = α·soft + (1 − α)·hard, where hard is the "
                "label-smoothed cross-entropy on x_θ and soft = mean over masked positions of "
                "T²·(1/V)·Σ_v p_v (log p_v − log q_v), p = softmax(z_θ/T) of the generator logits that produced "
                "x_θ, q = softmax(z_ψ/T), V the logit width, T = auxiliary_soft_temperature. 0 (default, and the "
                "authors' published setting alpha_fake: 0.) is the hard loss alone."})
    auxiliary_soft_temperature: float = field(default=1.0, metadata={
        "help": "T of the soft auxiliary loss (the authors' temperature_fake, 1)."})
    ema_decay: float = field(default=0.0, metadata={
        "help": "Decay of the exponential moving average of the generator; 0 disables it."})
    memory_mode: str = field(default="full", metadata={
        "help": f"{MEMORY_MODES}: 'full' keeps teacher, generator and auxiliary as separate copies (the paper); "
                "'lora' keeps one frozen base model (the teacher) with two LoRA adapters (generator, auxiliary)."})
    lora_r: int = field(default=16, metadata={"help": "LoRA rank in memory_mode='lora'."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA alpha in memory_mode='lora'."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout in memory_mode='lora'."})
    lora_target_modules: list[str] | None = field(default=None, metadata={
        "help": "Modules that get LoRA adapters (default: every linear layer except the output layer)."})
    freeze_input_embeddings: bool = field(default=True, metadata={
        "help": "Keep the generator's and auxiliary's input embeddings frozen (the authors' fix_emb_layer)."})
    freeze_output_embeddings: bool = field(default=False, metadata={
        "help": "Keep the generator's and auxiliary's output layer frozen."})
    eval_num_samples: int = field(default=64, metadata={
        "help": "One-step samples drawn at each evaluation for the sample-quality metric."})
    remove_unused_columns: bool = field(default=False, metadata={
        "help": "Kept False: batches hold conditions, not model kwargs."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.divergence not in DIVERGENCES and self.divergence != "custom":
            raise ValueError(f"`divergence` must be one of {DIVERGENCES}, got {self.divergence!r}.")
        self.jeffreys_beta = check_real("jeffreys_beta", self.jeffreys_beta, low=0.0, high=1.0)
        check_choice("loss_normalization", self.loss_normalization, LOSS_NORMALIZATIONS)
        # type and finiteness here; DiMOInitialState checks the ranges (and the token distribution)
        self.r_init = check_real("r_init", self.r_init, low=0.0, high=1.0)
        self.r_init_max = check_real("r_init_max", self.r_init_max, low=0.0, high=1.0, allow_none=True)
        self.embedding_noise_std = check_real("embedding_noise_std", self.embedding_noise_std, low=0.0)
        check_choice("embedding_noise_mode", self.embedding_noise_mode, EMBEDDING_NOISE_MODES)
        for name in ("clamp_min_one_mask", "sample_mask_tokens"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"`{name}` must be a bool, got {type(getattr(self, name)).__name__}.")
        check_choice("remask_mode", self.remask_mode, REMASK_MODES)
        check_choice("auxiliary_sample", self.auxiliary_sample, AUXILIARY_SAMPLES)
        self.alpha_fake = check_real("alpha_fake", self.alpha_fake, low=0.0, high=1.0)
        self.auxiliary_soft_temperature = check_real("auxiliary_soft_temperature", self.auxiliary_soft_temperature,
                                                     low=0.0, low_open=True)
        self.initial_state()  # validates r_init, r_init_max, the token distribution and σ
        choices = {"remask_schedule": REMASK_SCHEDULES, "loss_weighting": LOSS_WEIGHTINGS,
                   "memory_mode": MEMORY_MODES}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"`{name}` must be one of {allowed}, got {getattr(self, name)!r}.")
        self.generator_temperature = check_real("generator_temperature", self.generator_temperature, low=0.0,
                                                low_open=True)
        self.teacher_cfg_scale = check_real("teacher_cfg_scale", self.teacher_cfg_scale, low=0.0)
        self.auxiliary_updates_per_step = check_int("auxiliary_updates_per_step", self.auxiliary_updates_per_step,
                                                    low=1)
        self.auxiliary_label_smoothing = check_real("auxiliary_label_smoothing", self.auxiliary_label_smoothing,
                                                    low=0.0, high=1.0, high_open=True)
        self.ema_decay = check_real("ema_decay", self.ema_decay, low=0.0, high=1.0, high_open=True)
        self.generation_length = check_int("generation_length", self.generation_length, low=1, allow_none=True)
        self.auxiliary_learning_rate = check_real("auxiliary_learning_rate", self.auxiliary_learning_rate, low=0.0,
                                                  low_open=True, allow_none=True)
        self.lora_r = check_int("lora_r", self.lora_r, low=1)
        check_real("lora_alpha", self.lora_alpha, low=0.0, low_open=True)
        self.lora_dropout = check_real("lora_dropout", self.lora_dropout, low=0.0, high=1.0, high_open=True)
        self.eval_num_samples = check_int("eval_num_samples", self.eval_num_samples, low=1)

    def initial_state(self, vocab_size: int | None = None,
                      excluded_token_ids: list[int] | None = None) -> DiMOInitialState:
        """The initial-state settings as the object that is saved with the generator."""
        return DiMOInitialState(r_init=self.r_init, r_init_max=self.r_init_max,
                                token_distribution=self.init_token_distribution,
                                embedding_noise_std=self.embedding_noise_std, vocab_size=vocab_size,
                                excluded_token_ids=list(excluded_token_ids or []),
                                embedding_noise_mode=self.embedding_noise_mode,
                                clamp_min_one_mask=self.clamp_min_one_mask)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> DiMOConfig:
        """The authors' published configuration ``name`` (one of ``PRESETS``: ``"maskgit-imagenet"``,
        ``"meissonic"``) with every official switch on, updated by ``overrides`` (``output_dir`` among them, as
        always). The source of every value is noted next to it in ``PRESETS`` (the official repository's
        ``configs/DIMO_*.yaml``, ``scripts/launch_DIMO_*.sh`` and training code). Not reproduced: the authors'
        Meissonic negative prompt for the teacher (``distil_neg_prompt``) and their ratio clamp of the Meissonic
        re-masking to [0.02, 0.98]."""
        if name not in PRESETS:
            raise ValueError(f"unknown Di[M]O preset {name!r}; expected one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})


__all__ = ["AUXILIARY_SAMPLES", "DiMOConfig", "LOSS_WEIGHTINGS", "MEMORY_MODES", "PRESETS", "REMASK_MODES",
           "REMASK_SCHEDULES"]
