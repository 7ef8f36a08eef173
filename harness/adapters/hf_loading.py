"""Loading transformers models from disk the safe way, shared by the ``hf-*`` adapters.

Safetensors only and no remote code unless the project opts in for that model, because a pickled
checkpoint or a model repository's Python file runs arbitrary code at load time.
"""

from __future__ import annotations

import sys
from typing import Any

from harness.adapters.base import ModelConfig
from harness.errors import TollgateInputError
from harness.hashing import hash_obj, hash_tree


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def check_weights(cfg: ModelConfig) -> None:
    """Refuse pickled weights unless allowed; warn loudly about every opt-in."""
    path = cfg.path
    assert path is not None
    if not path.is_dir():
        raise TollgateInputError("model directory does not exist.", file=path, field=f"models.{cfg.name}.path")
    opts = cfg.options
    has_safe = any(path.glob("*.safetensors"))
    has_pickle = any(path.glob("*.bin")) or any(path.glob("*.pt")) or any(path.glob("*.pth"))
    if not has_safe:
        if has_pickle and not opts.allow_unsafe_weights:
            raise TollgateInputError(
                "holds only pickled weights (*.bin/*.pt), which can run code when loaded.",
                file=path, field=f"models.{cfg.name}.options.allow_unsafe_weights",
                hint="Convert them to safetensors, or set options.allow_unsafe_weights: true "
                     "for this model if you trust its source.",
            )
        if not has_pickle:
            raise TollgateInputError("holds no model weights (*.safetensors).", file=path,
                                     field=f"models.{cfg.name}.path")
    if opts.allow_unsafe_weights:
        print(f"warning: model '{cfg.name}' may load pickled weights (allow_unsafe_weights).", file=sys.stderr)
    if opts.trust_remote_code:
        print(f"warning: model '{cfg.name}' may run code from its directory (trust_remote_code).",
              file=sys.stderr)


def load_pretrained(auto_cls: Any, cfg: ModelConfig, **kwargs: Any) -> Any:
    """``from_pretrained`` from disk only, with the project's safety settings."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own bar reports progress; theirs only adds noise per model load
    opts = cfg.options
    extra: dict[str, Any] = {"local_files_only": True, "trust_remote_code": opts.trust_remote_code}
    if "dtype" in kwargs or auto_cls.__name__.startswith("AutoModel"):
        extra["use_safetensors"] = True if not opts.allow_unsafe_weights else None
    try:
        return auto_cls.from_pretrained(str(cfg.path), **extra, **kwargs)
    except (OSError, ValueError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TollgateInputError(f"cannot load with {auto_cls.__name__}: {first}", file=cfg.path,
                                 field=f"models.{cfg.name}.path") from None


def hf_fingerprint(cfg: ModelConfig, ignore: tuple[str, ...] = ()) -> str:
    """Hash of every file in the model directory plus the options that change its outputs."""
    assert cfg.path is not None
    if not cfg.path.exists():
        raise TollgateInputError("model directory does not exist.", file=cfg.path,
                                 field=f"models.{cfg.name}.path")
    opts = cfg.options.model_dump(exclude=set(ignore))
    return hash_obj(cfg.adapter, hash_tree(cfg.path), opts)
