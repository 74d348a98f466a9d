"""Registration of hf-dlm with transformers and diffusers; :func:`register` runs once, on ``import hf_dlm``.

What gets registered:

* ``AutoConfig``: ``llada``, ``Dream``, ``logit_fm`` and ``masked_image_pipeline`` (the marker config a saved image
  pipeline carries for the ``text-to-image`` task);
* ``AutoModel`` / ``AutoModelForCausalLM`` / ``AutoModelForMaskedLM``: our language-model classes. ``AutoModel``
  maps to the language-model classes (not the bare trunks) because the released LLaDA and Dream checkpoints map it
  so in their ``auto_map``: code written for them (``AutoModel.from_pretrained(...).generate``) keeps working, and
  it does so without ``trust_remote_code``;
* transformers' quantizer registry: ``quant_method="quant_dllm"`` (config and quantizer);
* transformers' pipeline registry: the ``text-to-image`` task;
* diffusers' ``LOADABLE_CLASSES``: the modules of our pipeline components (see :func:`_register_diffusers_library`);
* lm-evaluation-harness's model registry, when the harness is installed and imported: the model ``hf-dlm``.

Start-up time. Each of those registries lives in a heavy module: transformers' Auto classes import torch,
``transformers.quantizers`` and ``transformers.pipelines`` import most of transformers, diffusers' loading utilities
most of diffusers (together about 7x ``import transformers``). So ``import hf_dlm`` imports none of them: each entry
is written into its registry the moment that registry's module finishes importing (at once, if it already has),
by a post-import hook (a ``sys.meta_path`` finder that wraps the loader of exactly those modules and steps aside
when they are done). The classes behind the entries are imported when first used: a registry holds a
:class:`_DeferredClass` stand-in that imports the real class when transformers first touches it (``from_pretrained``,
``from_config``, a call) and then puts the real class in its place. Whatever order a program imports ``hf_dlm``,
transformers and diffusers in, the Auto classes, the quantizer, the task and diffusers' loaders see our entries
whenever they can be asked for them.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Callable
from typing import Any

# the modules whose import completes a registry, and the entries written into it then
CONFIG_AUTO = "transformers.models.auto.configuration_auto"
MODEL_AUTO = "transformers.models.auto.modeling_auto"
QUANTIZER_AUTO = "transformers.quantizers.auto"
PIPELINES = "transformers.pipelines"
DIFFUSERS_LOADING = "diffusers.pipelines.pipeline_loading_utils"
LM_EVAL_MODELS = "lm_eval.models"
LM_EVAL_MODEL = ("hf-dlm", "hf_dlm.integrations.lm_eval_harness:DiffusionLM")  # the harness's name, and where it is

QUANT_METHOD = "quant_dllm"  # hf_dlm.quantization.configuration.QUANT_METHOD (a test keeps the two equal)
IMAGE_PIPELINE_MODEL_TYPE = "masked_image_pipeline"  # hf_dlm.pipelines.text_to_image.MODEL_TYPE (likewise)
TEXT_TO_IMAGE = "hf_dlm.pipelines.text_to_image"
# module paths of our diffusers components, as saved pipelines name them in model_index.json (likewise)
DIFFUSERS_COMPONENT_MODULES = {"hf_dlm.models.masked_image.modeling_masked_image": "ModelMixin",
                               "hf_dlm.schedulers.scheduling_maskgit": "SchedulerMixin"}

# the pipelines hf-dlm saves: the class name a saved pipeline's model_index.json records → the module defining it.
# ``hf_dlm.hub.load_artifact`` loads a saved pipeline through this table, as transformers' Auto classes load our
# models, so the sharing code sits below the pipelines (a test keeps it equal to ``hf_dlm.pipelines``'s classes)
PIPELINE_CLASSES = {"AutoregressiveImagePipeline": "hf_dlm.pipelines.pipeline_autoregressive_image",
                    "MaskedImagePipeline": "hf_dlm.pipelines.pipeline_masked_image"}

# (config module, config class, {Auto class name: (model module, model class)})
ARCHITECTURES: tuple[tuple[str, str, dict[str, tuple[str, str]]], ...] = (
    ("hf_dlm.models.llada.configuration_llada", "LLaDAConfig",
     {"AutoModel": ("hf_dlm.models.llada.modeling_llada", "LLaDAModelLM"),
      "AutoModelForCausalLM": ("hf_dlm.models.llada.modeling_llada", "LLaDAModelLM"),
      "AutoModelForMaskedLM": ("hf_dlm.models.llada.modeling_llada", "LLaDAModelLM")}),
    ("hf_dlm.models.dream.configuration_dream", "DreamConfig",
     {"AutoModel": ("hf_dlm.models.dream.modeling_dream", "DreamModel"),
      "AutoModelForCausalLM": ("hf_dlm.models.dream.modeling_dream", "DreamModel"),
      "AutoModelForMaskedLM": ("hf_dlm.models.dream.modeling_dream", "DreamForMaskedLM")}),
    ("hf_dlm.models.logit_fm.configuration_logit_fm", "LogitFMConfig",
     {"AutoModel": ("hf_dlm.models.logit_fm.modeling_logit_fm", "LogitFMModel"),
      "AutoModelForCausalLM": ("hf_dlm.models.logit_fm.modeling_logit_fm", "LogitFMModel")}),
)

_done = False


# --------------------------------------------------------------------------------------------------------------------
# classes imported on first use


class _DeferredMeta(type):
    """Metaclass of the stand-ins: attribute reads, calls and ``isinstance``/``issubclass`` checks go to the real
    class (importing it the first time)."""

    def __getattr__(cls, name: str) -> Any:  # only reached for names the stand-in does not define itself
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return getattr(cls.resolve(), name)

    def __setattr__(cls, name: str, value: Any) -> None:
        # e.g. PIPELINE_REGISTRY sets `_registered_impl` on the class it registers: keep it for the real class
        type.__setattr__(cls, name, value)
        if not name.startswith("_deferred"):
            cls._deferred_assigned[name] = value
            if cls._deferred_real is not None:
                setattr(cls._deferred_real, name, value)

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        return cls.resolve()(*args, **kwargs)

    def __instancecheck__(cls, instance: Any) -> bool:
        return isinstance(instance, cls.resolve())

    def __subclasscheck__(cls, subclass: type) -> bool:
        return issubclass(subclass, cls.resolve())

    def __repr__(cls) -> str:
        return f"<deferred class '{cls.__module__}.{cls.__qualname__}'>"

    def resolve(cls) -> type:
        """The real class (imported now if need be); every registry entry holding this stand-in then holds it."""
        if cls._deferred_real is None:
            real = getattr(importlib.import_module(cls.__module__), cls.__qualname__)
            type.__setattr__(cls, "_deferred_real", real)
            for name, value in cls._deferred_assigned.items():
                setattr(real, name, value)
            for swap in cls._deferred_swaps:
                swap(real)
        return cls._deferred_real

    def __reduce__(cls) -> tuple:
        return _import_class, (cls.__module__, cls.__qualname__)


def _import_class(module: str, name: str) -> type:
    return getattr(importlib.import_module(module), name)


class _DeferredClass(metaclass=_DeferredMeta):
    """Base of the stand-ins :func:`deferred_class` makes."""

    _deferred_real: type | None = None


_deferred: dict[tuple[str, str], type] = {}


def deferred_class(module: str, name: str, **attributes: Any) -> type:
    """The stand-in for ``module.name`` (one per class): a class that imports the real one when first used.
    ``attributes`` are set on the stand-in and answer without importing (``config_class`` for the Auto classes)."""
    key = (module, name)
    if key not in _deferred:
        namespace = {"__module__": module, "__qualname__": name, "_deferred_assigned": {}, "_deferred_swaps": [],
                     "__doc__": f"Stand-in for {module}.{name}, imported on first use (hf_dlm._registration)."}
        stand_in = _DeferredMeta(name, (_DeferredClass,), namespace)
        for attribute, value in attributes.items():
            type.__setattr__(stand_in, attribute, value)
        _deferred[key] = stand_in
    return _deferred[key]


def resolve_all() -> None:
    """Import every class still behind a stand-in (a test of the registrations calls this)."""
    for stand_in in list(_deferred.values()):
        stand_in.resolve()


# --------------------------------------------------------------------------------------------------------------------
# post-import hooks

_hooks: dict[str, list[Callable[[], None]]] = {}
_completed: set[str] = set()


class _HookedLoader(importlib.abc.Loader):
    """Runs a module's loader, then the hooks waiting for that module. The module keeps its own loader."""

    def __init__(self, loader: importlib.abc.Loader, name: str) -> None:
        self._loader = loader
        self._name = name

    def __getattr__(self, name: str) -> Any:  # get_source, get_resource_reader, is_package …
        return getattr(self._loader, name)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self._loader.create_module(spec)

    def exec_module(self, module: Any) -> None:
        if getattr(module, "__spec__", None) is not None and module.__spec__.loader is self:
            module.__spec__.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        self._loader.exec_module(module)
        _completed.add(self._name)
        for hook in _hooks.pop(self._name, []):
            hook()
        if not _hooks:
            _remove_finder()


class _PostImportFinder(importlib.abc.MetaPathFinder):
    """Finds nothing itself: for a module with hooks waiting, it asks the other finders and wraps the loader."""

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _hooks:
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _HookedLoader(spec.loader, fullname)
        return spec


_finder = _PostImportFinder()


def _remove_finder() -> None:
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)


def _imported(name: str) -> bool:
    """``name`` has finished importing (a module still executing its body does not count)."""
    if name in _completed:
        return True
    module = sys.modules.get(name)
    return module is not None and not getattr(getattr(module, "__spec__", None), "_initializing", False)


def when_imported(modules: tuple[str, ...], action: Callable[[], None]) -> None:
    """Run ``action`` once, when all of ``modules`` have been imported: now if they have, else right after the last
    of them finishes importing, in whatever code imports it.

    Every missing module gets the hook (not only the first): one of them may start importing inside another's
    import (``modeling_auto`` imports ``configuration_auto``), and a module already executing can no longer be
    hooked."""
    missing = [name for name in modules if not _imported(name)]
    if not missing:
        action()
        return
    state = {"done": False}

    def retry() -> None:
        if not state["done"] and all(_imported(name) for name in modules):
            state["done"] = True
            action()

    for name in missing:
        _hooks.setdefault(name, []).append(retry)
    if _finder not in sys.meta_path:
        sys.meta_path.insert(0, _finder)


# --------------------------------------------------------------------------------------------------------------------
# the registrations


def _swap_in_mapping(mapping: Any, key: Any, stand_in: type) -> Callable[[type], None]:
    """After resolution, the transformers mapping holds the real class instead of the stand-in."""

    def swap(real: type) -> None:
        if mapping._extra_content.get(key) is stand_in:
            mapping._extra_content[key] = real

    return swap


def _register_configs() -> None:
    # start-up time: runs once the registry's module has been imported (when_imported); never imports it first
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING, AutoConfig

    for config_module, config_name, _ in ARCHITECTURES:
        config = getattr(importlib.import_module(config_module), config_name)
        AutoConfig.register(config.model_type, config, exist_ok=True)
    if IMAGE_PIPELINE_MODEL_TYPE not in CONFIG_MAPPING:  # a marker config, defined beside the text-to-image task
        stand_in = deferred_class(TEXT_TO_IMAGE, "MaskedImagePipelineConfig", model_type=IMAGE_PIPELINE_MODEL_TYPE)
        CONFIG_MAPPING.register(IMAGE_PIPELINE_MODEL_TYPE, stand_in, exist_ok=True)
        stand_in._deferred_swaps.append(_swap_in_mapping(CONFIG_MAPPING, IMAGE_PIPELINE_MODEL_TYPE, stand_in))


def _register_models() -> None:
    # start-up time: runs once the registry's module has been imported (when_imported); never imports it first
    from transformers.models.auto import modeling_auto

    for config_module, config_name, models in ARCHITECTURES:
        config = getattr(importlib.import_module(config_module), config_name)
        for auto_name, (model_module, model_name) in models.items():
            auto = getattr(modeling_auto, auto_name)
            if config in auto._model_mapping._extra_content:  # registered already (e.g. the real class)
                continue
            stand_in = deferred_class(model_module, model_name, config_class=config)
            auto.register(config, stand_in, exist_ok=True)
            stand_in._deferred_swaps.append(_swap_in_mapping(auto._model_mapping, config, stand_in))


def _register_quantizer() -> None:
    # start-up time: runs once the registry's module has been imported (when_imported); never imports it first
    from transformers.quantizers.auto import AUTO_QUANTIZATION_CONFIG_MAPPING, AUTO_QUANTIZER_MAPPING

    # written into the two dicts as `register_quantization_config`/`register_quantizer` do (those check
    # `issubclass`, which would import the classes now)
    for mapping, module, name in ((AUTO_QUANTIZATION_CONFIG_MAPPING, "hf_dlm.quantization.configuration",
                                   "QuantDLLMConfig"),
                                  (AUTO_QUANTIZER_MAPPING, "hf_dlm.quantization.hf_quantizer", "QuantDLLMHfQuantizer")):
        if QUANT_METHOD in mapping:
            continue
        stand_in = deferred_class(module, name)
        mapping[QUANT_METHOD] = stand_in

        def swap(real: type, mapping: dict = mapping, stand_in: type = stand_in) -> None:
            if mapping.get(QUANT_METHOD) is stand_in:
                mapping[QUANT_METHOD] = real

        stand_in._deferred_swaps.append(swap)


def _register_text_to_image() -> None:
    # start-up time: runs once the registry's module has been imported (when_imported); never imports it first
    from transformers.pipelines import PIPELINE_REGISTRY

    if "text-to-image" in PIPELINE_REGISTRY.get_supported_tasks():
        return
    pipeline_class = deferred_class(TEXT_TO_IMAGE, "TextToImagePipeline")
    loader = deferred_class(TEXT_TO_IMAGE, "MaskedImagePipelineLoader")
    PIPELINE_REGISTRY.register_pipeline("text-to-image", pipeline_class=pipeline_class, pt_model=loader,
                                        type="multimodal")
    task = PIPELINE_REGISTRY.supported_tasks["text-to-image"]

    def swap_pipeline(real: type) -> None:
        if task.get("impl") is pipeline_class:
            task["impl"] = real

    def swap_loader(real: type) -> None:
        task["pt"] = tuple(real if cls is loader else cls for cls in task.get("pt", ()))

    pipeline_class._deferred_swaps.append(swap_pipeline)
    loader._deferred_swaps.append(swap_loader)


def _register_diffusers_library() -> None:
    """Tell diffusers that our component modules are loadable libraries, like ``diffusers`` and ``transformers``.

    A saved pipeline names our components by module path in ``model_index.json`` (e.g.
    ``["hf_dlm.schedulers.scheduling_maskgit", "MaskGITScheduler"]``). Loading from disk imports that module, but
    ``DiffusionPipeline.from_pretrained("org/name")`` from the Hub refuses a module path that is not a known library
    unless the repository ships it as a custom ``.py`` file. Registering the module paths lets our pipelines be
    pulled by hub id without ``trust_remote_code``; the saved format is unchanged."""
    # start-up time: runs once the registry's module has been imported (when_imported); never imports it first
    from diffusers.pipelines import pipeline_loading_utils

    methods = ["save_pretrained", "from_pretrained"]
    for module, base in DIFFUSERS_COMPONENT_MODULES.items():
        pipeline_loading_utils.LOADABLE_CLASSES.setdefault(module, {base: methods})


def _register_lm_eval_model() -> None:
    """The lm-evaluation-harness model ``hf-dlm``, as a placeholder the harness imports when the name is asked for
    (``simple_evaluate(model="hf-dlm")``). Written once the harness has loaded its own model table: its registry
    loads that table only while it is empty."""
    # start-up time: runs once the registry's module has been imported (when_imported); never imports it first
    from lm_eval.api.registry import model_registry

    name, target = LM_EVAL_MODEL
    if name not in model_registry:
        model_registry.register(name, target=target)


def register() -> None:
    """Register everything (idempotent). Entries whose registry is not imported yet are written when it is."""
    global _done
    if _done:
        return
    _done = True
    when_imported((CONFIG_AUTO,), _register_configs)
    when_imported((CONFIG_AUTO, MODEL_AUTO), _register_models)
    when_imported((QUANTIZER_AUTO,), _register_quantizer)
    when_imported((PIPELINES,), _register_text_to_image)
    when_imported((DIFFUSERS_LOADING,), _register_diffusers_library)
    when_imported((LM_EVAL_MODELS,), _register_lm_eval_model)


__all__ = ["register", "resolve_all", "deferred_class", "when_imported"]
