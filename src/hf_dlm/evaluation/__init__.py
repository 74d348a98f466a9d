"""Evaluation: the oracle language and its exact text metrics, the digits image task and its metrics, and the
Monte-Carlo ELBO. The reference models every benchmark compares against are trained by ``hf_dlm.recipes.reference``."""

from .digits import ImageMetrics, image_metrics, load_digits_task
from .likelihood import ELBOEstimate, elbo_log_likelihood, heldout_nll
from .oracle import OracleLanguage
from .text_metrics import TextMetrics, data_reference, distinct_n, oracle_nll, text_metrics, unigram_entropy

__all__ = [
    "ELBOEstimate",
    "ImageMetrics",
    "OracleLanguage",
    "TextMetrics",
    "data_reference",
    "distinct_n",
    "elbo_log_likelihood",
    "heldout_nll",
    "image_metrics",
    "load_digits_task",
    "oracle_nll",
    "text_metrics",
    "unigram_entropy",
]
