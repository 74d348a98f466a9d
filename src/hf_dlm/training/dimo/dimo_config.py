"""``DiMOConfig``: the knobs of Di[M]O distillation (Zhu et al., 2025) on top of ``TrainingArguments``."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..._training_guards import GuardedTrainingArguments, check_choice, check_int, check_real
from ...generation.initial_state import TOKEN_DISTRIBUTIONS, DiMOInitialState
from .divergences import DIVERGENCES, LOSS_NORMALIZATIONS

REMASK_SCHEDULES = ("uniform", "cosine", "arccos")
LOSS_WEIGHTINGS = ("constant", "mask_ratio", "inverse_mask_ratio")
MEMORY_MODES = ("full", "lora")


@dataclass
class DiMOConfig(GuardedTrainingArguments):
    """Training arguments of [`DiMOTrainer`]. ``learning_rate`` is the generator's; the defaults of the method's
    fields follow the authors' MaskGIT configuration where it has one (r_init 0.6, arccos remasking, label
    smoothing 0.1, teacher CFG 2 for class-conditional images, loss summed over tokens).

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
        "help": "σ of the Gaussian perturbation of the generator's input embeddings at the generated positions."})
    generator_temperature: float = field(default=1.0, metadata={
        "help": "Temperature of sampling x_θ from the generator logits (Algorithm 1, line 6)."})
    remask_schedule: str = field(default="arccos", metadata={
        "help": f"Distribution of the remask ratio r_t of x̃_t ~ q_t|0(·|x_θ), one of {REMASK_SCHEDULES}: r = u, "
                "cos(πu/2) or arccos(u)/(π/2) with u ~ U(0, 1)."})
    loss_weighting: str = field(default="constant", metadata={
        "help": f"w(t) of eq. 7, one of {LOSS_WEIGHTINGS}: 1, r_t or 1/r_t."})
    teacher_cfg_scale: float = field(default=1.0, metadata={
        "help": "Classifier-free guidance w of the teacher: uncond + w·(cond − uncond); 1 disables it. Text: the "
                "unconditional input masks the prompt (LLaDA's cfg_scale = w − 1); images: the null condition."})
    auxiliary_learning_rate: float | None = field(default=None, metadata={
        "help": "Learning rate of the auxiliary model ψ (default: `learning_rate`)."})
    auxiliary_updates_per_step: int = field(default=1, metadata={
        "help": "Auxiliary updates (Algorithm 1, lines 12–13) per generator update, each on a fresh x̃_t'."})
    auxiliary_label_smoothing: float = field(default=0.1, metadata={
        "help": "Label smoothing of the auxiliary model's masked-token cross-entropy."})
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
                                excluded_token_ids=list(excluded_token_ids or []))


__all__ = ["DiMOConfig", "LOSS_WEIGHTINGS", "MEMORY_MODES", "REMASK_SCHEDULES"]
