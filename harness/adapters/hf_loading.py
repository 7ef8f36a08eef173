"""Loading transformers models from disk the safe way, shared by the ``hf-*`` adapters.

A model directory is checked before anything of it is hashed or loaded (:func:`check_model_dir`):

- **Pickled weights** (``*.bin``, ``*.pt``, ``*.pth``) run code when loaded: a directory holding no
  safetensors is refused unless the model opts in with ``allow_unsafe_weights``; with safetensors
  present, only those are loaded.
- **Remote code**: a ``config.json`` or ``tokenizer_config.json`` with an ``auto_map`` names Python
  files of the directory that transformers imports with ``trust_remote_code``. Refused unless the
  model opts in, rather than silently loading transformers' built-in class in their place (which
  would evaluate another model than the one its authors describe).
- **Links**: a symbolic link must lead to a file inside the directory (or, for a Hugging Face cache
  snapshot, into that repository's ``blobs`` folder, where the cache keeps the real files). A link
  elsewhere is refused, naming it: the fingerprint and therefore every cached result stand for the
  directory's own content, and a link may lead to a file the project never meant to read (a
  secret, another model, a device). Links to folders are refused for the same reason.
- **Sizes**: the configuration files transformers parses are capped (``MAX_CONFIG_BYTES``, tokenizer
  files ``MAX_TOKENIZER_BYTES``), and the model ``config.json`` describes must fit its weights: a
  lower bound of its parameter count (embeddings and two square matrices per layer) may not exceed
  what the safetensors headers hold by more than ``PARAMS_SLACK`` times. An absurd ``vocab_size`` or
  layer count is refused in milliseconds instead of transformers allocating it, or spending hours
  building a million layers to fill with random numbers.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from harness.adapters.base import ModelConfig
from harness.errors import TollgateInputError
from harness.hashing import hash_obj, hash_tree

PICKLE_SUFFIXES = (".bin", ".pt", ".pth")
CONFIG_FILES = ("config.json", "generation_config.json", "tokenizer_config.json", "special_tokens_map.json",
                "added_tokens.json", "preprocessor_config.json", "chat_template.json")
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "merges.txt", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")
MAX_CONFIG_BYTES = 4 << 20  # the largest real config.json files (thousands of labels) are well under 1 MiB
MAX_TOKENIZER_BYTES = 256 << 20  # the largest real tokenizer.json files are tens of MiB
MAX_SAFETENSORS_HEADER = 100_000_000  # the safetensors library's own limit
PARAMS_SLACK = 4  # shared layers (ALBERT) or factorised embeddings make the bound loose, never 4x loose
PARAMS_FLOOR = 10**8  # below this the model is small enough to build, whatever its weights say
_HIDDEN = ("hidden_size", "n_embd", "d_model", "dim", "embed_dim")
_LAYERS = ("num_hidden_layers", "n_layer", "num_layers", "n_layers")


def set_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


def _field(cfg: ModelConfig, option: str | None = None) -> str:
    return f"models.{cfg.name}.options.{option}" if option else f"models.{cfg.name}.path"


def _check_links(cfg: ModelConfig, root: Path) -> None:
    allowed = [root]
    if root.parent.name == "snapshots" and (root.parent.parent / "blobs").is_dir():
        allowed.append((root.parent.parent / "blobs").resolve())  # a Hugging Face cache snapshot
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]  # never hashed nor loaded
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            if not p.is_symlink():
                continue
            rel = p.relative_to(root).as_posix()
            try:
                target = p.resolve()
            except (OSError, RuntimeError):
                target = None
            inside = target is not None and any(target.is_relative_to(a) for a in allowed)
            if target is None or not inside or target.is_dir():
                what = "a link that cannot be resolved" if target is None else \
                    f"a link to {target}, {'a folder' if inside else 'outside the model directory'}"
                raise TollgateInputError(
                    f"{rel} is {what}: a model is read only from its own files.", file=root, field=_field(cfg),
                    hint="Copy the file into the directory, or point 'path' at the directory it lives in.")


def _check_sizes(cfg: ModelConfig, root: Path) -> None:
    for p in sorted(root.iterdir()):
        limit = MAX_CONFIG_BYTES if p.name in CONFIG_FILES or p.name.endswith(".index.json") else \
            MAX_TOKENIZER_BYTES if p.name in TOKENIZER_FILES else None
        if limit is not None and p.is_file() and (size := p.stat().st_size) > limit:
            raise TollgateInputError(f"{p.name} is {size / (1 << 20):.1f} MiB; Tollgate reads such a file only up "
                                     f"to {limit >> 20} MiB.", file=p, field=_field(cfg))


def _read_json(cfg: ModelConfig, path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise TollgateInputError(f"is not valid JSON: {exc.msg}.", file=path, line=exc.lineno,
                                 field=_field(cfg)) from None
    except (UnicodeDecodeError, RecursionError) as exc:
        raise TollgateInputError(f"is not valid JSON: {type(exc).__name__}.", file=path, field=_field(cfg)) from None
    if not isinstance(data, dict):
        raise TollgateInputError("must hold a JSON object.", file=path, field=_field(cfg))
    return data


def _check_remote_code(cfg: ModelConfig, root: Path, configs: dict[str, dict[str, Any] | None]) -> None:
    if cfg.options.trust_remote_code:
        return
    for name, conf in configs.items():
        auto_map = conf.get("auto_map") if conf else None
        if not auto_map:
            continue
        refs = [v for vs in (auto_map.values() if isinstance(auto_map, dict) else [auto_map])
                for v in (vs if isinstance(vs, list) else [vs]) if isinstance(v, str)]
        modules = sorted({r.split("--")[-1].split(".")[0] + ".py" for r in refs}) or ["code"]
        raise TollgateInputError(
            f"{name} has an 'auto_map' that loads {', '.join(modules)} from the model directory: "
            f"transformers would import and run that code.", file=root / name,
            field=_field(cfg, "trust_remote_code"),
            hint="Set options.trust_remote_code: true for this model only if you trust its source.")


def _count(conf: dict[str, Any], keys: tuple[str, ...]) -> int:
    for k in keys:
        v = conf.get(k)
        if isinstance(v, float) and v.is_integer():  # 1e12 in JSON is a float
            v = int(v)
        if isinstance(v, int) and not isinstance(v, bool):
            return max(0, v)
    return 0


def config_params(conf: dict[str, Any], depth: int = 0) -> int:
    """A lower bound of the parameters ``conf`` describes: the embeddings, two hidden x hidden matrices
    per layer (attention's query and output), the classifier head; nested ``*_config`` added."""
    h, layers, vocab = _count(conf, _HIDDEN), _count(conf, _LAYERS), _count(conf, ("vocab_size",))
    labels = _count(conf, ("num_labels",)) or (len(conf["id2label"]) if isinstance(conf.get("id2label"), dict) else 0)
    nested = sum(config_params(v, depth + 1) for k, v in conf.items()
                 if k.endswith("_config") and isinstance(v, dict)) if depth < 4 else 0
    return vocab * h + layers * 2 * h * h + labels * h + nested


def safetensors_tensors(path: Path, bad: TollgateInputError) -> list[tuple[list[int], str]]:
    """(shape, dtype) of every tensor in a ``.safetensors`` file, read from its header alone (no
    weights, no torch); ``bad`` is raised for anything that is not a well-formed header."""
    try:
        with path.open("rb") as f:
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else -1
            if not 0 < n <= min(MAX_SAFETENSORS_HEADER, path.stat().st_size - 8):
                raise bad
            header = json.loads(f.read(n))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise bad from None
    if not isinstance(header, dict):
        raise bad
    tensors = []
    for name, t in header.items():
        if name == "__metadata__":
            continue
        shape, dtype = (t.get("shape"), t.get("dtype")) if isinstance(t, dict) else (None, None)
        if not (isinstance(shape, list) and isinstance(dtype, str)
                and all(isinstance(d, int) and d >= 0 for d in shape)):
            raise bad
        tensors.append((shape, dtype))
    return tensors


def _safetensors_capacity(cfg: ModelConfig, path: Path) -> int:
    """The most parameters a safetensors file can hold, from its header alone (integer tensors count
    as packed 4-bit values: a quantised int32 holds eight)."""
    bad = TollgateInputError("is not a valid safetensors file (its header cannot be read).", file=path,
                             field=_field(cfg))
    total = 0
    for shape, dtype in safetensors_tensors(path, bad):
        numel = 1
        for d in shape:
            numel *= d
        bits = int("".join(c for c in dtype if c.isdigit()) or 8)
        total += numel * (max(1, bits // 4) if dtype[:1] in ("I", "U") else 1)
    return total


def _check_params(cfg: ModelConfig, root: Path, conf: dict[str, Any] | None, safe: list[Path],
                  pickled: list[Path]) -> None:
    if not conf:
        return
    est = config_params(conf)
    if est <= PARAMS_FLOOR:
        return
    # pickles have no header to read: count at least half a byte per parameter
    capacity = sum(_safetensors_capacity(cfg, p) for p in safe) if safe else \
        2 * sum(p.stat().st_size for p in pickled)
    if est > PARAMS_SLACK * capacity:
        sizes = ", ".join(f"{k} {_count(conf, (k,)):,}" for k in ("vocab_size", *_HIDDEN, *_LAYERS, "num_labels")
                          if _count(conf, (k,)))
        raise TollgateInputError(
            f"describes a model of at least {est:,} parameters ({sizes}), but its weights hold at most "
            f"{capacity:,}: refusing to build it (transformers would allocate the difference and fill it "
            f"with random values).", file=root / "config.json", field=_field(cfg))


def check_model_dir(cfg: ModelConfig) -> None:
    """Everything :mod:`this module <harness.adapters.hf_loading>` promises, before a byte is hashed or loaded."""
    path = cfg.path
    assert path is not None
    if not path.is_dir():
        raise TollgateInputError("model directory does not exist." if not path.exists() else
                                 "is not a directory; 'path' names the folder saved by save_pretrained.",
                                 file=path, field=_field(cfg))
    root = path.resolve()
    _check_links(cfg, root)
    _check_sizes(cfg, root)
    configs = {name: _read_json(cfg, root / name) for name in ("config.json", "tokenizer_config.json")}
    _check_remote_code(cfg, root, configs)
    safe = sorted(root.glob("*.safetensors"))
    pickled = sorted(p for p in root.iterdir() if p.suffix in PICKLE_SUFFIXES and p.is_file())
    if not safe:
        if pickled and not cfg.options.allow_unsafe_weights:
            raise TollgateInputError(
                f"holds only pickled weights ({', '.join(p.name for p in pickled)}), which can run code when "
                f"loaded.", file=path, field=_field(cfg, "allow_unsafe_weights"),
                hint="Convert them to safetensors, or set options.allow_unsafe_weights: true "
                     "for this model if you trust its source.")
        if not pickled:
            raise TollgateInputError("holds no model weights (*.safetensors).", file=path, field=_field(cfg))
    _check_params(cfg, root, configs["config.json"], safe, pickled)


def check_weights(cfg: ModelConfig) -> None:
    """Refuse what :func:`check_model_dir` refuses; warn loudly about every opt-in."""
    check_model_dir(cfg)
    opts = cfg.options
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
    except RuntimeError as exc:
        if "mismatch" not in str(exc):
            raise
        raise TollgateInputError(f"cannot load with {auto_cls.__name__}: the shapes config.json describes do not "
                                 f"match the weights (transformers' report above lists them).", file=cfg.path,
                                 field=f"models.{cfg.name}.path") from None


def hf_fingerprint(cfg: ModelConfig, ignore: tuple[str, ...] = ()) -> str:
    """Hash of every file in the model directory plus the options that change its outputs (a
    directory :func:`check_model_dir` refuses has none: nothing of it is read)."""
    assert cfg.path is not None
    check_model_dir(cfg)
    opts = cfg.options.model_dump(exclude=set(ignore))
    return hash_obj(cfg.adapter, hash_tree(cfg.path), opts)
