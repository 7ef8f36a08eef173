"""The project file, ``tollgate.yaml``: parsed into typed objects, every mistake reported by key path.

Nothing here loads a model or opens the store: ``tollgate validate`` must be able to check a
project in well under a second.
"""

from __future__ import annotations

import glob
import importlib
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from harness.adapters import adapters
from harness.adapters.base import GenerationSettings, ModelConfig
from harness.errors import TollgateInputError
from harness.policy import DashboardSettings, GatePolicy, RolloutPolicy
from harness.yamlfile import Name, PathText, YamlDoc, load_yaml, one_line, printable_errors, pydantic_error, show

PROJECT_FILE = "tollgate.yaml"
DEFAULT_STORE = ".tollgate/tollgate.duckdb"
REGISTERED_DIR = ".tollgate/models"  # models registered by commands, one YAML file each (RegisteredEntry)
ROLES = ("base", "candidate", "production", "other")


def _module_name(value: str) -> str:
    if not all(part.isidentifier() for part in value.split(".")):
        raise ValueError("must be a module name: Python identifiers joined by dots, e.g. myplugins.checks")
    return value


ModuleName = Annotated[str, AfterValidator(_module_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerationEntry(_Strict):
    max_new_tokens: int = Field(128, ge=1, le=32768)
    temperature: float = Field(0.0, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    stop: list[str] = []
    seed: int = 0


class CostEntry(_Strict):
    """What serving a model costs: a machine by the hour (its measured throughput turns that into a
    price per request), or an endpoint by the token."""

    per_hour: float | None = Field(None, ge=0, description="price of the serving machine per hour")
    per_1k_prompt_tokens: float | None = Field(None, ge=0)
    per_1k_completion_tokens: float | None = Field(None, ge=0)
    currency: str = "USD"

    @model_validator(mode="after")
    def _one_way(self) -> CostEntry:
        by_token = self.per_1k_prompt_tokens is not None or self.per_1k_completion_tokens is not None
        if (self.per_hour is not None) == by_token:
            raise ValueError("give either 'per_hour' or 'per_1k_prompt_tokens'/'per_1k_completion_tokens'")
        return self


class ModelEntry(_Strict):
    adapter: Name
    path: PathText | None = None
    url: str | None = None
    role: Literal["base", "candidate", "production", "other"] = "other"
    version: str | None = None
    description: str | None = None
    training_data: PathText | None = None
    generation: GenerationEntry = GenerationEntry()
    options: dict[str, Any] = {}
    cost: CostEntry | None = None
    repeats: int | None = Field(None, ge=1, le=1000, description="answers per example (sampling models)")


class RegisteredEntry(_Strict):
    """A model registered by a command (``tollgate sweep select``) rather than written by hand: one file
    per model in ``.tollgate/models/NAME.yaml``, beside the store, saying where it came from."""

    selected_from: dict[str, Any] = {}
    model: ModelEntry


class ProjectEntry(_Strict):
    store: PathText = DEFAULT_STORE
    models: dict[Name, ModelEntry]
    suites: list[PathText] = ["suites/*"]
    plugins: list[ModuleName] = []
    gate: GatePolicy = GatePolicy()
    rollout: RolloutPolicy = RolloutPolicy()
    dashboard: DashboardSettings = DashboardSettings()


@dataclass
class Project:
    """A validated project: everything a command needs to find models, suites and the store."""

    path: Path
    root: Path
    store_path: Path
    models: dict[str, ModelConfig]
    training_data: dict[str, Path | None]
    suite_dirs: list[Path]
    doc: YamlDoc = field(repr=False)
    gate: GatePolicy = field(default_factory=GatePolicy)
    rollout: RolloutPolicy = field(default_factory=RolloutPolicy)
    dashboard: DashboardSettings = field(default_factory=DashboardSettings)
    costs: dict[str, CostEntry | None] = field(default_factory=dict)
    repeats: dict[str, int | None] = field(default_factory=dict)
    registered: dict[str, Path] = field(default_factory=dict)  # name -> its file, for registered models

    def model(self, name: str) -> ModelConfig:
        if name not in self.models:
            known = ", ".join(sorted(self.models)) or "none"
            raise TollgateInputError(
                f"unknown model '{name}'; the project defines: {known}.", file=self.path, field="models"
            )
        return self.models[name]


def find_project(start: Path | None = None, explicit: str | Path | None = None) -> Path:
    """The project file given by ``--project``, else ``tollgate.yaml`` here or in a parent."""
    if explicit is not None:
        p = Path(explicit)
        if p.is_dir():
            p = p / PROJECT_FILE
        if not p.is_file():
            raise TollgateInputError("project file not found.", file=p)
        return p.resolve()
    here = (start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / PROJECT_FILE).is_file():
            return d / PROJECT_FILE
    raise TollgateInputError(
        f"no {PROJECT_FILE} in {here} or any parent directory.",
        hint="Run 'tollgate init DIR' to create a project, or pass --project PATH.",
    )


@printable_errors()
def load_project(path: Path) -> Project:
    """Parse and check ``tollgate.yaml``: keys, types, adapters and their options, paths."""
    doc = load_yaml(path)
    try:
        entry = ProjectEntry.model_validate(doc.data)
    except ValidationError as exc:
        raise pydantic_error(doc, exc) from None
    root = path.parent.resolve()
    _import_plugins(entry.plugins, doc, root)

    models: dict[str, ModelConfig] = {}
    training: dict[str, Path | None] = {}
    costs: dict[str, CostEntry | None] = {}
    repeats: dict[str, int | None] = {}
    registered: dict[str, Path] = {}
    entries = [(name, m, doc, ("models", name)) for name, m in entry.models.items()]
    for file in sorted((root / REGISTERED_DIR).glob("*.yaml")):
        reg_doc = load_yaml(file)
        try:
            reg = RegisteredEntry.model_validate(reg_doc.data)
        except ValidationError as exc:
            raise pydantic_error(reg_doc, exc) from None
        if file.stem in entry.models:
            raise TollgateInputError(f"model '{file.stem}' is registered here and also defined in {path.name}; "
                                     f"a name means one model.", file=file, field="model",
                                     hint="Delete this file, or select the trial again under another name (--as).")
        entries.append((file.stem, reg.model, reg_doc, ("model",)))
        registered[file.stem] = file
    for name, m, mdoc, loc in entries:
        models[name] = _model_config(name, m, mdoc, loc, root)
        training[name] = _resolve(root, m.training_data, mdoc, (*loc, "training_data")) if m.training_data else None
        costs[name] = m.cost
        repeats[name] = m.repeats

    suite_dirs: list[Path] = []
    for i, pattern in enumerate(entry.suites):
        matches = sorted(Path(p) for p in glob.glob(str(root / pattern)))
        dirs = [p for p in matches if (p / "suite.yaml").is_file()]
        if not dirs and not any(ch in pattern for ch in "*?["):
            raise TollgateInputError(f"{show(pattern)} is not a folder holding a suite.yaml.",
                                     file=path, line=doc.line_of(("suites", i)), field=f"suites[{i}]")
        suite_dirs.extend(d.resolve() for d in dirs if d.resolve() not in suite_dirs)

    return Project(path=path, root=root, store_path=_resolve(root, entry.store, doc, ("store",)), models=models,
                   training_data=training, suite_dirs=suite_dirs, doc=doc, gate=entry.gate, rollout=entry.rollout,
                   dashboard=entry.dashboard, costs=costs, repeats=repeats, registered=registered)


def _model_config(name: str, m: ModelEntry, doc: YamlDoc, loc: tuple[Any, ...], root: Path) -> ModelConfig:
    """One model entry checked against its adapter: options, and the path or URL it needs."""
    spec = adapters.get(m.adapter, file=str(doc.path), line=doc.line_of((*loc, "adapter")),
                        field=".".join((*map(str, loc), "adapter")))
    try:
        options = spec.options.model_validate(m.options)
    except ValidationError as exc:
        raise pydantic_error(doc, exc, prefix=(*loc, "options")) from None
    model_path = None
    if spec.needs == "path":
        if not m.path:
            raise TollgateInputError(f"adapter '{m.adapter}' needs a 'path' to a model directory.",
                                     file=doc.path, line=doc.line_of(loc), field=".".join((*map(str, loc), "path")))
        model_path = _resolve(root, m.path, doc, (*loc, "path"))
    elif spec.needs == "url" and not m.url:
        raise TollgateInputError(f"adapter '{m.adapter}' needs a 'url' (an OpenAI-compatible endpoint).",
                                 file=doc.path, line=doc.line_of(loc), field=".".join((*map(str, loc), "url")))
    g = m.generation
    return ModelConfig(name=name, adapter=m.adapter, options=options, path=model_path, url=m.url, role=m.role,
                       version=m.version, root=root,
                       generation=GenerationSettings(g.max_new_tokens, g.temperature, g.top_p, tuple(g.stop), g.seed))


def _resolve(root: Path, text: str, doc: YamlDoc, loc: tuple[Any, ...]) -> Path:
    try:
        return (root / text).resolve()
    except (OSError, RuntimeError, ValueError) as exc:  # a symlink loop, a name the OS refuses
        raise TollgateInputError(f"cannot use {show(text)} as a path: {one_line(str(exc))}.", file=doc.path,
                                 line=doc.line_of(loc), field=".".join(map(str, loc))) from None


@printable_errors()
def check_model_paths(project: Project, only: str | None = None) -> None:
    """Model directories and training files must exist (of every model, or of ``only`` that one)."""
    for name, cfg in project.models.items():
        if only is not None and name != only:
            continue
        loc = ("models", name)
        if cfg.path is not None and not cfg.path.exists():
            raise TollgateInputError(f"model path {cfg.path} does not exist.", file=project.path,
                                     line=project.doc.line_of((*loc, "path")), field=f"models.{name}.path")
        td = project.training_data.get(name)
        if td is not None and not td.is_file():
            raise TollgateInputError(f"training data file {td} does not exist.", file=project.path,
                                     line=project.doc.line_of((*loc, "training_data")),
                                     field=f"models.{name}.training_data")


def _import_plugins(modules: list[str], doc: YamlDoc, root: Path) -> None:
    """Plugins register their own adapters and checks when imported.

    The project folder goes on ``sys.path`` so plugins, python models and python checks import
    from it like a user expects.
    """
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for i, mod in enumerate(modules):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            raise TollgateInputError(f"cannot import plugin module '{mod}': {one_line(str(exc))}.", file=doc.path,
                                     line=doc.line_of(("plugins", i)), field=f"plugins[{i}]") from None
        except Exception as exc:  # the plugin's own code failed while importing: the user's to fix
            raise TollgateInputError(f"plugin module '{mod}' failed while importing: {type(exc).__name__}: "
                                     f"{one_line(str(exc))}.", file=doc.path, line=doc.line_of(("plugins", i)),
                                     field=f"plugins[{i}]") from None
