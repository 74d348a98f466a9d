"""``hf-dlm quantize``: Quant-dLLM 2-bit post-training quantization of a saved diffusion LM."""

from __future__ import annotations

import argparse

from ._parsing import SAVED, add_verb

EXAMPLES = """examples:
  hf-dlm quantize outputs/demo outputs/demo-2bit --calibration corpus.txt
  hf-dlm quantize GSAI-ML/LLaDA-8B-Instruct llada-2bit --calibration wiki.txt --num-calibration-sequences 128
  hf-dlm quantize outputs/demo outputs/demo-2bit --config quant.json --block-size 32   # flags override the file
  hf-dlm quantize outputs/demo outputs/demo-sign --abmp-fraction 0 --no-dor            # no statistics needed"""

# flag → QuantDLLMConfig field
FIELDS = {"bits": int, "block_size": int, "abmp_fraction": float, "rsr_iterations": int,
          "num_calibration_sequences": int, "calibration_seq_len": int, "mcs_timesteps": int,
          "calibration_batch_size": int, "seed": int}


def add_parser(commands) -> None:
    parser = add_verb(commands, "quantize", help="quantize a saved diffusion LM with Quant-dLLM (2-bit)",
                                 description="Quantize an hf-dlm diffusion LM with Quant-dLLM (MCS calibration, DAQ, "
                                 "ABMP) and save it with its tokenizer and card; reload it with from_pretrained.\n\n"
                                 + EXAMPLES)
    parser.add_argument("model", help=SAVED)
    parser.add_argument("output", help="folder to write the quantized checkpoint to")
    parser.add_argument("--calibration", default=None, help="UTF-8 text file of calibration text (one document "
                        "per line)")
    parser.add_argument("--config", default=None, help="JSON file of QuantDLLMConfig fields")
    for name, kind in FIELDS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    parser.add_argument("--no-dor", action="store_true", help="turn off the data-aware importance mask")
    parser.add_argument("--no-mcs", action="store_true", help="calibrate on unmasked sequences")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import os

    from .._io import save_atomically
    from ..hub.cards import looks_like_hub_id, set_card_metadata
    from ..quantization import QuantDLLMConfig, QuantDLLMQuantizer, quantization_report
    from ._loading import load_text_model, read_json

    values = read_json(args.config, "`--config`") if args.config else {}
    values.update({name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None})
    if args.no_dor:
        values["use_dor"] = False
    if args.no_mcs:
        values["use_mcs"] = False
    try:
        config = QuantDLLMConfig(**values)
    except TypeError as error:
        raise ValueError(f"`--config`: {error}") from None
    if args.calibration is not None and not os.path.isfile(args.calibration):
        raise FileNotFoundError(f"`--calibration` {args.calibration!r} does not exist.")
    if os.path.exists(args.output) and not os.path.isdir(args.output):
        raise ValueError(f"`output` {args.output!r} exists and is not a folder.")
    model, tokenizer = load_text_model(args.model)
    QuantDLLMQuantizer(config).quantize_model(model, tokenizer=tokenizer, calibration_data=args.calibration)
    if looks_like_hub_id(args.model):
        set_card_metadata(model, base_model=args.model)
    save_atomically(args.output, model, *([tokenizer] if tokenizer is not None else []))
    report = quantization_report(model)
    print(f"{args.output}: {len(report['modules'])} layers quantized, {report['bits_per_weight']:.3f} bits per "
          f"weight, {report['model_bytes']:,} bytes")
    return 0
