"""Glue hf-dlm ships for its neighbours.

* :mod:`hf_dlm.integrations.lm_eval_harness` — the lm-evaluation-harness model ``hf-dlm`` (needs the ``eval`` extra:
  ``pip install "hf-dlm[eval]"``). It is imported only when asked for: ``import hf_dlm`` does not import the
  harness.
"""
