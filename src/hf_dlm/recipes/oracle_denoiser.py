"""An exact denoiser for the oracle language, for tests and benchmarks: a ``PreTrainedModel`` whose logits at every
position are the oracle HMM's exact log p(x_i = w | every other unmasked token), by the forward-backward algorithm
with masked positions marginalized out.

With exact conditionals the masked-diffusion ELBO equals the log-likelihood in expectation (the any-order
autoregressive identity behind Nie et al., 2025, eq. 6), so an ELBO computed from this model must agree with the
oracle's exact conditional log-probabilities within Monte-Carlo error; and read as a causal LM (logits at i taken as
predicting token i+1, what the harness's plain ``hf`` backend does) it is garbage.
"""

from __future__ import annotations

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import CausalLMOutput

from hf_dlm.evaluation.oracle import OracleLanguage


class OracleDenoiserConfig(PretrainedConfig):
    model_type = "oracle_denoiser"

    def __init__(self, oracle_seed: int = 0, vocab_size: int = 261, mask_token_id: int = 257,
                 max_position_embeddings: int = 64, **kwargs) -> None:
        self.oracle_seed, self.vocab_size, self.mask_token_id = oracle_seed, vocab_size, mask_token_id
        self.max_position_embeddings = max_position_embeddings
        super().__init__(**kwargs)


class OracleDenoiser(PreTrainedModel):
    """The exact denoiser (no trainable weights: ``anchor`` only gives it a device and dtype)."""

    config_class = OracleDenoiserConfig

    def __init__(self, config: OracleDenoiserConfig) -> None:
        super().__init__(config)
        oracle = OracleLanguage(seed=config.oracle_seed)
        self.num_words = oracle.num_words
        self.register_buffer("log_initial", oracle.log_initial.float())
        self.register_buffer("log_transition", oracle.log_transition.float())
        self.register_buffer("log_emission", oracle.log_emission.float())  # (states, words)
        self.anchor = torch.nn.Parameter(torch.zeros(()))  # a parameter, so the model has a device and dtype
        self.post_init()

    def _init_weights(self, module) -> None:
        """Nothing to initialise: the buffers are the oracle's exact tables and ``anchor`` is zero by construction
        (``post_init`` must not overwrite them)."""

    def forward(self, input_ids: torch.LongTensor, attention_mask=None, **kwargs) -> CausalLMOutput:
        batch, length = input_ids.shape
        transition, emission_matrix = self.log_transition.double().exp(), self.log_emission.double().exp()
        known = input_ids < self.num_words
        emission = torch.where(known.unsqueeze(-1), emission_matrix.T[input_ids.clamp(max=self.num_words - 1)],
                               torch.ones((), dtype=torch.float64))  # p(x_t | s), 1 when masked (marginalized)
        prior, after = [], [None] * length  # p(s_t | x_<t) and p(x_>t | s_t), each rescaled (only ratios matter)
        alpha = self.log_initial.double().exp().expand(batch, -1)
        for t in range(length):
            prior.append(alpha)
            alpha = (alpha * emission[:, t]) @ transition
            alpha = alpha / alpha.sum(-1, keepdim=True)
        beta = torch.ones(batch, transition.shape[0], dtype=torch.float64)
        for t in reversed(range(length)):
            after[t] = beta
            beta = (emission[:, t] * beta) @ transition.T
            beta = beta / beta.sum(-1, keepdim=True)
        state = torch.stack(prior, 1) * torch.stack(after, 1)  # ∝ p(s_t | x_{≠t})
        words = (state / state.sum(-1, keepdim=True)) @ emission_matrix  # p(x_t = w | x_{≠t})
        logits = torch.full((batch, length, self.config.vocab_size), -1e4, dtype=torch.float64)
        logits[..., :self.num_words] = words.log()
        return CausalLMOutput(logits=logits.float() + 0 * self.anchor)
