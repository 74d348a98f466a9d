"""Evaluation: Monte-Carlo ELBO likelihood and the oracle language with exact likelihoods."""

from .likelihood import ELBOEstimate, elbo_log_likelihood
from .oracle import OracleLanguage

__all__ = ["ELBOEstimate", "OracleLanguage", "elbo_log_likelihood"]
