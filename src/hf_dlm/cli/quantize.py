"""``hf-dlm quantize``: Quant-dLLM 2-bit post-training quantization of a saved diffusion LM."""

from __future__ import annotations

import argparse
from typing import Any

from ._errors import CLIError
from ._parsing import SAVED, add_verb, fraction, non_negative_int, positive_int, seed

EXAMPLES = """examples:
  hf-dlm quantize outputs/demo outputs/demo-2bit --calibration corpus.txt
  hf-dlm quantize GSAI-ML/LLaDA-8B-Instruct llada-2bit --calibration wiki.txt --num-calibration-sequences 128
  hf-dlm quantize outputs/demo outputs/demo-2bit --config quant.json --block-size 32   # flags override the file
  hf-dlm quantize outputs/demo outputs/demo-sign --abmp-fraction 0 --no-dor            # no statistics needed"""

# flag → argparse type checking its range (QuantDLLMConfig checks the rest)
FIELDS = {"bits": positive_int, "block_size": positive_int, "abmp_fraction": fraction,
          "rsr_iterations": non_negative_int, "num_calibration_sequences": positive_int,
          "calibration_seq_len": positive_int, "mcs_timesteps": positive_int, "calibration_batch_size": positive_int,
          "seed": seed}


def add_parser(commands: Any) -> None:
    parser = add_verb(commands, "quantize", help="quantize a saved diffusion LM with Quant-dLLM (2-bit)",
                      description="Quantize an hf-dlm diffusion LM with Quant-dLLM (MCS calibration, DAQ, ABMP) and "
                      "save it with its tokenizer and card; reload it with from_pretrained.\n\n" + EXAMPLES)
    parser.add_argument("model", help=SAVED)
    parser.add_argument("output", help="folder to write the quantized checkpoint to")
    parser.add_argument("--calibration", default=None, help="UTF-8 text file of calibration text (one document "
                        "per line)")
    parser.add_argument("--config", default=None, help="JSON file of QuantDLLMConfig fields")
    for name, kind in FIELDS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None)
    parser.add_argument("--no-dor", action="store_true", help="turn off the data-aware importance mask")
    parser.add_argument("--no-mcs", action="store_true", help="calibrate on unmasked sequences")
    parser.set_defaults(run=run, check=check)


def check(args: argparse.Namespace) -> None:
    """Files, output folder and model path, before anything is loaded (the config itself is checked in `run`,
    before the model is loaded)."""
    from ._loading import MODEL_FILES, check_file, check_output_folder, check_saved, read_json

    args.values = read_json(args.config, "`--config`") if args.config else {}
    if args.calibration is not None:
        check_file(args.calibration, "`--calibration`")
    check_output_folder(args.output, "`output`")
    check_saved(args.model, "`model`", files=MODEL_FILES)


def run(args: argparse.Namespace) -> int:
    from .._io import save_atomically
    from ..hub.cards import looks_like_hub_id, set_card_metadata
    from ..quantization import QuantDLLMConfig, QuantDLLMQuantizer, quantization_report
    from ._loading import load_text_model

    values = dict(args.values)
    values.update({name: getattr(args, name) for name in FIELDS if getattr(args, name) is not None})
    if args.no_dor:
        values["use_dor"] = False
    if args.no_mcs:
        values["use_mcs"] = False
    try:
        config = QuantDLLMConfig(**values)
    except (TypeError, ValueError) as error:
        raise CLIError(f"`--config`: {error}" if args.config else str(error)) from error
    model, tokenizer = load_text_model(args.model)
    QuantDLLMQuantizer(config).quantize_model(model, tokenizer=tokenizer, calibration_data=args.calibration)
    if looks_like_hub_id(args.model):
        set_card_metadata(model, base_model=args.model)
    save_atomically(args.output, model, *([tokenizer] if tokenizer is not None else []))
    report = quantization_report(model)
    print(f"{args.output}: {len(report['modules'])} layers quantized, {report['bits_per_weight']:.3f} bits per "
          f"weight, {report['model_bytes']:,} bytes")
    return 0
