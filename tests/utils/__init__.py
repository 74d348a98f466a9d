"""Shared builders for the test suite, imported as ``tests.utils.<module>`` (never ``from conftest import``):

- ``models``: tiny LLaDA / Dream configs, ``TINY_QUANT`` and a quantized LLaDA, a LLaDA saved with the oracle
  tokenizer, ``CallCounter``;
- ``llada_layout`` / ``dream_layout``: tiny checkpoints in the released 8B / 7B layouts and plain-torch forwards;
- ``image_pipelines``: tiny aMUSEd components and a class-conditional ``MaskedImagePipeline``;
- ``distributed``: ``run_torchrun`` for the ``distributed`` tests;
- ``hub_server``: the in-memory Hub on 127.0.0.1 for the ``hub`` tests;
- ``docs_fixtures``: stand-ins for what ``make demo`` leaves in ``outputs/``, for tests/test_docs.py.

Fixtures (``tiny_llada``, ``tiny_dream``) live in tests/conftest.py."""
