"""`QuantDLLMQuantizer.quantize_model`: Quant-dLLM over a whole model, one transformer block at a time.

The loop follows GPTQ's sequential recipe: capture the inputs of the first block from the calibration forward
passes (MCS inputs, Algorithm 1), then for each block — move it to the compute device, accumulate S_MCS = Σ XᵀX
for each of its linears with forward hooks, quantize them (ABMP + DAQ), run the block again with its quantized
linears to produce the inputs of the next block, and move it back. Only one block's weights and activations need
to live on the device.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm
from transformers.quantizers.auto import AutoHfQuantizer
from transformers.utils import logging

from ..denoiser import denoise, get_mask_token_id
from .calibration import CalibrationData, calibration_sequences, check_token_ids, masked_calibration_simulation
from .configuration import QuantDLLMConfig
from .packed_linear import QuantDLLMLinear
from .weight_quantizer import quantize_weight

logger = logging.get_logger(__name__)


class _Captured(Exception):
    """Raised by the first block's pre-hook to stop the calibration forward once its inputs are recorded."""


def find_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ``nn.ModuleList`` of transformer blocks: the first one whose length is the config's number of layers
    (``model.transformer.blocks`` for LLaDA, ``model.layers`` for Dream and Llama-style models)."""
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if config is not None and hasattr(config, "get_text_config") else config
    layers = getattr(text_config, "num_hidden_layers", None)
    for name, module in model.named_modules():
        if isinstance(module, nn.ModuleList) and len(module) > 0 and (layers is None or len(module) == layers):
            return name, module
    raise ValueError(f"Could not find the transformer blocks of {type(model).__name__}: no nn.ModuleList with "
                     f"num_hidden_layers={layers} modules.")


def default_modules_to_not_convert(model: nn.Module) -> list[str]:
    """Full names of the input embeddings and the output head, found by identity (LLaDA's head and its MLP
    down-projections share the name ``ff_out``; only the head is returned)."""
    targets = []
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        fn = getattr(model, getter, None)
        module = fn() if fn is not None else None
        if module is not None:
            targets.append(module)
    return [name for name, module in model.named_modules() if any(module is t for t in targets)]


def should_convert(name: str, modules_to_not_convert: list[str]) -> bool:
    """A module is kept in full precision when its full name equals an entry or ends with ``"." + entry``."""
    return not any(name == skip or name.endswith("." + skip) for skip in modules_to_not_convert)


def set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


def convertible_linears(model: nn.Module, modules_to_not_convert: list[str], prefix: str = ""
                        ) -> list[tuple[str, nn.Linear]]:
    out = []
    for name, module in model.named_modules():
        full = f"{prefix}.{name}" if prefix and name else (prefix or name)
        if isinstance(module, nn.Linear) and should_convert(full, modules_to_not_convert):
            out.append((name, module))
    return out


@dataclass
class BlockReport:
    """What quantizing one block cost and did: wall and CPU seconds, the peak of the device's allocated memory
    (CUDA), the process's resident set after the block and its peak during the block (Linux; None elsewhere), and
    per layer the block orders, objectives and seconds."""

    index: int
    seconds: float
    peak_device_bytes: int | None
    rss_bytes: int | None
    layers: dict[str, dict[str, Any]] = field(default_factory=dict)
    cpu_seconds: float | None = None
    peak_rss_bytes: int | None = None
    statistics_seconds: float | None = None


def _reset_peak_rss() -> bool:
    """Reset the kernel's resident-set high-water mark (``VmHWM``) to the current RSS (Linux ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes() -> int | None:
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _gib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 2**30:.2f} GiB"


def _move_outside(model: nn.Module, prefix: str, device: torch.device) -> None:
    """Move every parameter and buffer that is not inside ``prefix`` (the block list) to ``device``."""
    for name, module in model.named_modules():
        if name == prefix or name.startswith(prefix + "."):
            continue
        for param in module._parameters.values():
            if param is not None:
                param.data = param.data.to(device)
        for key, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[key] = buffer.to(device)


def _vocabulary_size(model: nn.Module) -> int | None:
    """The number of token ids the model knows: ``config.vocab_size`` (text config), else the input embeddings'
    rows, else None."""
    config = getattr(model, "config", None)
    text_config = config.get_text_config() if config is not None and hasattr(config, "get_text_config") else config
    size = getattr(text_config, "vocab_size", None)
    if isinstance(size, int) and size > 0:
        return size
    return _embedding_rows(model)


def _embedding_rows(model: nn.Module) -> int | None:
    getter = getattr(model, "get_input_embeddings", None)
    try:
        embeddings = getter() if getter is not None else None
    except (NotImplementedError, AttributeError):
        embeddings = None
    return int(embeddings.num_embeddings) if isinstance(embeddings, nn.Embedding) else None


def check_finite_parameters(model: nn.Module) -> None:
    """Raise `ValueError` naming the module and parameter when a floating parameter holds NaN or inf (calibration
    statistics and the weight fit would otherwise fail deep inside a Cholesky factorisation or give garbage)."""
    bad = []
    for name, param in model.named_parameters():
        if not param.is_floating_point() or param.device.type == "meta":
            continue
        count = int((~torch.isfinite(param.detach())).sum())
        if count:
            bad.append((name, count, param.numel()))
    if bad:
        name, count, total = bad[0]
        module_name, _, param_name = name.rpartition(".")
        module = model.get_submodule(module_name) if module_name else model
        more = f" ({len(bad) - 1} more parameters too: {[b[0] for b in bad[1:4]]})" if len(bad) > 1 else ""
        raise ValueError(f"parameter `{param_name}` of module `{module_name or '<root>'}` ({type(module).__name__}) "
                         f"holds {count} NaN/inf values of {total}{more}; Quant-dLLM needs finite weights.")


class QuantDLLMQuantizer:
    """Optimum-style entry point: ``QuantDLLMQuantizer(config).quantize_model(model, tokenizer, calibration_data)``.

    After the call every convertible ``nn.Linear`` of ``model`` is a `QuantDLLMLinear`, ``model.config`` carries the
    `QuantDLLMConfig` (with the resolved ``modules_to_not_convert`` and ``mask_token_id``), and ``save_pretrained``
    writes a checkpoint that ``from_pretrained`` reloads through the registered ``quant_dllm`` quantizer.
    ``self.block_reports`` holds time, memory and per-layer objectives of each block."""

    def __init__(self, config: QuantDLLMConfig | None = None, **kwargs: Any) -> None:
        self.config = config if config is not None else QuantDLLMConfig(**kwargs)
        self.block_reports: list[BlockReport] = []

    def calibration_inputs(self, model: nn.Module, calibration_data: CalibrationData | None,
                           tokenizer: Any = None) -> torch.LongTensor:
        """Calibration sequences, passed through MCS (Algorithm 1) when ``use_mcs`` is on."""
        config = self.config
        data = calibration_data if calibration_data is not None else config.dataset
        if data is None:
            raise ValueError("Quant-dLLM with `use_dor` or ABMP needs calibration data: pass `calibration_data` or "
                             "set `QuantDLLMConfig.dataset`.")
        if tokenizer is None and isinstance(config.tokenizer, (str, os.PathLike)):
            from transformers import AutoTokenizer  # start-up time: the tokenizer registry costs ~0.3 s

            tokenizer = AutoTokenizer.from_pretrained(config.tokenizer)
        elif tokenizer is None:
            tokenizer = config.tokenizer  # a tokenizer object set on the config
        sequences = calibration_sequences(data, config.num_calibration_sequences, config.calibration_seq_len,
                                          tokenizer=tokenizer, seed=config.seed)
        if config.use_mcs and config.mask_token_id is None:
            try:
                config.mask_token_id = get_mask_token_id(model)
            except ValueError as error:
                raise ValueError("`use_mcs=True` needs a mask token: set `QuantDLLMConfig.mask_token_id` or use a "
                                 "model whose config has `mask_token_id` (or `use_mcs=False`).") from error
        check_token_ids(sequences, _vocabulary_size(model))
        if not config.use_mcs:
            return sequences
        rows = _embedding_rows(model)
        if rows is not None and config.mask_token_id >= rows:
            raise ValueError(f"`mask_token_id`={config.mask_token_id} is outside the model's {rows} input "
                             "embeddings.")
        generator = torch.Generator().manual_seed(config.seed)
        return masked_calibration_simulation(sequences, config.mcs_timesteps, config.prefix_ratio,
                                             config.visibility, config.mask_token_id, generator)

    @torch.no_grad()
    def quantize_model(self, model: nn.Module, tokenizer: Any = None,
                       calibration_data: CalibrationData | None = None,
                       device: torch.device | str | None = None, show_progress: bool = True) -> nn.Module:
        """Quantize ``model`` in place, block by block, and return it.

        Args:
            model: a transformers model (our LLaDA/Dream or any model with a list of transformer blocks).
            tokenizer: encodes text ``calibration_data``.
            calibration_data: texts, token-id lists, a (N, L) id tensor or a text-file path (default:
                ``config.dataset``). Not needed when the config reads no statistics (``use_dor=False`` and
                ``abmp_fraction=0``).
            device: where each block is quantized (default: where the model is). The blocks stay where they were
                between their turns, so a model larger than the device fits.

        Checked up front, each with a `ValueError` naming what is wrong: the config's fields (re-validated, so edits
        after construction count), NaN/inf parameters (module and parameter named), ``modules_to_not_convert``
        entries that match no module, a model with no ``nn.Linear`` left to quantize in its blocks, empty or
        non-integer calibration data and token ids outside the vocabulary; during calibration, NaN/inf activations
        or statistics (the layer named). Linears outside the transformer blocks (other than the embeddings and the
        head) stay in full precision: they are added to ``modules_to_not_convert`` with a warning, so that the
        saved checkpoint reloads.
        """
        config = self.config
        self._check_model(model, device, show_progress)
        model_device = next(model.parameters()).device
        device = torch.device(device) if device is not None else model_device
        if config.modules_to_not_convert is None:
            config.modules_to_not_convert = default_modules_to_not_convert(model)
        prefix, blocks = find_blocks(model)
        self._check_layers(model, prefix, blocks)
        was_training = model.training
        model.eval()
        self.block_reports = []
        hidden, extras = None, None
        if config.needs_statistics:
            inputs = self.calibration_inputs(model, calibration_data, tokenizer)
            _move_outside(model, prefix, device)
            hidden, extras = self._capture_first_block_inputs(model, blocks, inputs.to(device))
            if not hidden:
                raise ValueError(f"the calibration forward never reached the first block `{prefix}.0`: no "
                                 "calibration activations were captured.")
            bad = sum(int((~torch.isfinite(h)).sum()) for h in hidden)
            if bad:
                raise ValueError(f"the calibration activations entering `{prefix}.0` hold {bad} NaN/inf values (the "
                                 "calibration forward overflowed); quantize in float32 or check the calibration "
                                 "inputs.")
        bar = tqdm(total=len(blocks), desc="Quant-dLLM blocks", disable=not show_progress)
        for index, block in enumerate(blocks):
            home = next(block.parameters()).device
            block.to(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            peak_exact = _reset_peak_rss()
            start, cpu_start = time.perf_counter(), time.process_time()
            report = BlockReport(index=index, seconds=0.0, peak_device_bytes=None, rss_bytes=None)
            linears = convertible_linears(block, config.modules_to_not_convert, prefix=f"{prefix}.{index}")
            statistics = self._statistics(block, linears, hidden, extras) if hidden is not None else {}
            report.statistics_seconds = time.perf_counter() - start
            for name, linear in linears:
                layer_start = time.perf_counter()
                result = quantize_weight(linear.weight.data, config, statistics.pop(name, None), linear.bias,
                                         name=f"{prefix}.{index}.{name}")
                set_submodule(block, name, result.layer)
                report.layers[name] = {"block_orders": result.block_orders, "objective_init": result.objective_init,
                                       "objective_final": result.objective_final,
                                       "output_error": result.output_error,
                                       "outlier_fraction": result.outlier_fraction,
                                       "seconds": time.perf_counter() - layer_start}
            statistics.clear()
            if hidden is not None and index + 1 < len(blocks):
                hidden = [self._run_block(block, h, extra) for h, extra in zip(hidden, extras)]
            block.to(home)
            report.seconds = time.perf_counter() - start
            report.cpu_seconds = time.process_time() - cpu_start
            report.peak_device_bytes = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None
            report.rss_bytes = _rss_bytes()
            report.peak_rss_bytes = _peak_rss_bytes() if peak_exact else None
            self.block_reports.append(report)
            logger.info("Quant-dLLM block %d: %.1fs (%.1f CPU-s, statistics %.1fs), peak RSS %s, peak device %s",
                        index, report.seconds, report.cpu_seconds, report.statistics_seconds,
                        _gib(report.peak_rss_bytes), _gib(report.peak_device_bytes))
            bar.update(1)
        bar.close()
        if hidden is not None:
            _move_outside(model, prefix, model_device)
        self._mark_quantized(model)
        model.train(was_training)
        logger.info("Quant-dLLM quantized %d blocks in %.1fs", len(blocks),
                    sum(r.seconds for r in self.block_reports))
        return model

    def _check_model(self, model: nn.Module, device: Any, show_progress: Any) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module, got {type(model).__name__}.")
        self.config.post_init()
        if not isinstance(show_progress, bool):
            raise TypeError(f"`show_progress` must be True or False, got {show_progress!r}.")
        if device is not None:
            if not isinstance(device, (str, torch.device)):
                raise TypeError(f"`device` must be None, a string or a torch.device, got {type(device).__name__}.")
            try:
                torch.device(device)
            except RuntimeError as error:
                raise ValueError(f"`device` {device!r} is not a valid torch device: {error}") from None
        if next(model.parameters(), None) is None:
            raise ValueError(f"{type(model).__name__} has no parameters: there is nothing to quantize.")
        check_finite_parameters(model)
        skip = self.config.modules_to_not_convert
        if skip:
            names = [name for name, _ in model.named_modules()]
            unmatched = [entry for entry in skip if not any(n == entry or n.endswith("." + entry) for n in names)]
            if unmatched:
                raise ValueError(f"`modules_to_not_convert` entries {unmatched} match no module of "
                                 f"{type(model).__name__}; give full module names or dotted suffixes of them.")

    def _check_layers(self, model: nn.Module, prefix: str, blocks: nn.ModuleList) -> None:
        """Refuse a model with nothing to quantize; keep linears outside the blocks dense, said and recorded."""
        config = self.config
        inside = sum(len(convertible_linears(block, config.modules_to_not_convert, prefix=f"{prefix}.{index}"))
                     for index, block in enumerate(blocks))
        if inside == 0:
            raise ValueError(f"{type(model).__name__} has no quantizable layers: no nn.Linear inside its "
                             f"{len(blocks)} transformer blocks `{prefix}` is left to convert (already quantized, "
                             f"or all excluded by `modules_to_not_convert`={config.modules_to_not_convert}).")
        outside = [name for name, _ in convertible_linears(model, config.modules_to_not_convert)
                   if not (name == prefix or name.startswith(prefix + "."))]
        if outside:
            logger.warning("Quant-dLLM quantizes the linears of the transformer blocks `%s` only; %s stay in full "
                           "precision and are added to `modules_to_not_convert`.", prefix, outside)
            config.modules_to_not_convert = list(config.modules_to_not_convert) + outside

    def _capture_first_block_inputs(self, model: nn.Module, blocks: nn.ModuleList, inputs: torch.LongTensor
                                    ) -> tuple[list[torch.Tensor], list[tuple[tuple, dict]]]:
        hidden, extras = [], []

        def hook(module, args, kwargs):
            hidden.append(args[0])
            extras.append((args[1:], kwargs))
            raise _Captured

        handle = blocks[0].register_forward_pre_hook(hook, with_kwargs=True)
        model_kwargs = {"use_cache": False} if hasattr(getattr(model, "config", None), "use_cache") else {}
        try:
            for batch in inputs.split(self.config.calibration_batch_size):
                with contextlib.suppress(_Captured):
                    denoise(model, batch, None, **model_kwargs)
        finally:
            handle.remove()
        return hidden, extras

    @staticmethod
    def _run_block(block: nn.Module, hidden: torch.Tensor, extra: tuple[tuple, dict]) -> torch.Tensor:
        out = block(hidden, *extra[0], **extra[1])
        return out[0] if isinstance(out, (tuple, list)) else out

    def _statistics(self, block: nn.Module, linears: list[tuple[str, nn.Linear]], hidden: list[torch.Tensor],
                    extras: list) -> dict[str, torch.Tensor]:
        """S_MCS = Σ_b X_bᵀ X_b for each linear's input over all calibration tokens (float32), accumulated in place
        batch by batch (``addmm_``: no per-batch Gram matrix is allocated). Linears that read the same tensor
        (q/k/v, gate/up) share one accumulator — the same tensor object under each name."""
        statistics: dict[str, torch.Tensor] = {}
        # per batch: id(input) → (input, accumulator); the input is held so that its id stays unique
        seen: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

        def make_hook(name: str):
            def hook(module, args):
                x = args[0]
                key = id(x)
                if key in seen:
                    if name not in statistics:
                        statistics[name] = seen[key][1]
                    elif statistics[name] is not seen[key][1]:
                        raise RuntimeError(f"`{name}` read the same input as another linear in one calibration "
                                           "batch but not in another; S_MCS cannot be shared.")
                    return
                flat = x.reshape(-1, x.shape[-1]).to(torch.float32)
                if name not in statistics:
                    statistics[name] = torch.zeros(flat.shape[1], flat.shape[1], dtype=torch.float32,
                                                   device=flat.device)
                statistics[name].addmm_(flat.T, flat)
                seen[key] = (x, statistics[name])
            return hook

        handles = [linear.register_forward_pre_hook(make_hook(name)) for name, linear in linears]
        try:
            for h, extra in zip(hidden, extras):
                seen.clear()
                self._run_block(block, h, extra)
        finally:
            seen.clear()
            for handle in handles:
                handle.remove()
        return statistics

    def _mark_quantized(self, model: nn.Module) -> None:
        if getattr(model, "hf_quantizer", None) is None:
            # transformers' quantizer registry holds our QuantDLLMHfQuantizer (hf_dlm._registration; it calls this
            # module, so it is reached through the registry, as transformers reaches it)
            model.hf_quantizer = AutoHfQuantizer.from_config(self.config, pre_quantized=True)
        model.quantization_method = self.config.quant_method
        if hasattr(model, "config"):
            model.config.quantization_config = self.config
            model.config._is_quantized = True


def replace_with_quant_dllm_linear(model: nn.Module, config: QuantDLLMConfig) -> list[str]:
    """Swap every convertible ``nn.Linear`` for an empty `QuantDLLMLinear` of the config's layout (before a
    pre-quantized checkpoint's tensors are loaded into it). Returns the names replaced."""
    skip = config.modules_to_not_convert or []
    replaced = []
    for name, linear in convertible_linears(model, skip):
        bias = linear.bias
        layer = QuantDLLMLinear(linear.in_features, linear.out_features, bias=bias is not None, bits=config.bits,
                                block_size=config.block_size, kernel=config.kernel,
                                dtype=bias.dtype if bias is not None else None, device=linear.weight.device)
        set_submodule(model, name, layer)
        replaced.append(name)
    return replaced


__all__ = ["BlockReport", "QuantDLLMQuantizer", "check_finite_parameters", "default_modules_to_not_convert",
           "find_blocks", "replace_with_quant_dllm_linear", "should_convert"]
