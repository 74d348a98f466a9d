"""The lab: recipes that train and score small models end to end — the ``hf-dlm demo`` recipe (:mod:`.demo`) and the
digits text-to-image task builder (:mod:`.digits`).

This package sits above training and evaluation (it uses both); nothing else in ``hf_dlm`` imports it except the
CLI. Import the submodule you need (``from hf_dlm.recipes.digits import build_digits_pipeline``): this ``__init__``
imports nothing, so ``hf_dlm.recipes.demo`` does not pay for the image stack.
"""
