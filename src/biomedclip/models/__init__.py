"""Models stage: BiomedCLIP architectures, one creation/loading path, bundles, domain tokenizer.

* :mod:`biomedclip.models.factory` — :func:`load_model` (built-in name | ``local-dir:`` |
  ``hf-hub:`` | checkpoint), :func:`create_bundle`, :func:`export_bundle`.
* :mod:`biomedclip.models.tokenizer` — train a WordPiece vocab from shard captions, measure
  token lengths against context sizes.
* ``configs/*.json`` — open_clip configs of the built-in models, registered with open_clip on
  import so ``open_clip`` / ``open_clip_train`` know the names.
"""

from typing import Any

__all__ = [
    "BUILTIN_MODELS",
    "HubUnavailableError",
    "LoadedModel",
    "ModelLoadError",
    "create_bundle",
    "export_bundle",
    "list_builtin_models",
    "load_model",
    "load_state_dict_compat",
    "register_builtin_configs",
]


def __getattr__(name: str) -> Any:
    """Import the factory (torch, open_clip: seconds) on first use, not with the package.

    The CLI imports ``biomedclip.models.cli`` to list its commands; ``--help`` must stay instant.
    """
    if name in __all__:
        from biomedclip.models import factory

        factory.register_builtin_configs()
        return getattr(factory, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
