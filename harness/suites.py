"""Suites: ``suite.yaml`` (what to ask and how to score it) beside ``examples.jsonl`` (the data).

A suite is checked as a whole before anything runs: keys and types, the checks and their
options, the prompt template against every example's fields, and for ``choice`` tasks the
options and the expected answer. Its content hash goes with every result, so a number always
says which version of a suite produced it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.behaviour import check_references
from harness.checks import CheckFn, CheckSpec, build_check, checks, code_identity, parse_check_entry
from harness.errors import TollgateInputError
from harness.examples import Example, load_examples
from harness.hashing import hash_obj
from harness.yamlfile import Name, PathText, YamlDoc, field_path, load_yaml, one_line, printable_errors, pydantic_error

SUITE_FILE = "suite.yaml"
KINDS = ("train_sample", "validation", "heldout", "edge", "general", "baseline")
TASKS = ("generate", "choice")
DEFAULT_CHECKS = {"generate": ["exact_match"], "choice": ["choice_accuracy"]}
MAX_TEMPLATE_SIZE = 1 << 24  # characters (or items) one operation of a prompt template may build
MAX_TEMPLATE_LOOPS = 1_000_000  # range() items one rendering may use, all loops together




class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class GenerationOverride(_Strict):
    max_new_tokens: int | None = Field(None, ge=1, le=32768)
    stop: list[str] | None = None


class LmEvalEntry(_Strict):
    """lm-eval tasks run as this suite (kind general or baseline)."""

    tasks: list[str] = Field(min_length=1)
    include_path: PathText = "."
    num_fewshot: int | None = Field(None, ge=0)
    limit: int | None = Field(None, ge=1)
    batch_size: int = Field(16, ge=1)
    metric: str | None = None


class SuiteEntry(_Strict):
    name: Name | None = None
    description: str | None = None
    kind: Literal["train_sample", "validation", "heldout", "edge", "general", "baseline"]
    task: Literal["generate", "choice"] = "generate"
    prompt: str = "{{ input }}"
    choices: list[str] | None = None
    choices_field: str | None = None
    target_delimiter: str = " "
    checks: list[Any] | None = None
    tags: list[str] = []
    data: PathText = "examples.jsonl"
    generation: GenerationOverride = GenerationOverride()
    lm_eval: LmEvalEntry | None = None
    source_suite: Name | None = None  # where invariant_to / directional ids point; default: this suite
    # answers per example (repeated sampling); how the suite is run, not what it holds: not in its hash
    repeats: int | None = Field(None, ge=1, le=1000)


@dataclass
class Suite:
    """A validated suite: its spec, its checks (built) and its examples."""

    name: str
    kind: str
    task: str
    path: Path
    spec: SuiteEntry
    check_specs: list[CheckSpec]
    checks: list[CheckFn] = field(repr=False)
    examples: list[Example] = field(repr=False)
    source: Suite | None = field(default=None, repr=False)  # set by link_sources; None: this suite

    @property
    def has_behaviour(self) -> bool:
        return any(e.source_id is not None for e in self.examples)

    @cached_property
    def content_hash(self) -> str:
        if self.spec.lm_eval is not None:  # the task files and their data are the content
            from harness.lmeval_bridge import content_files_hash

            files = content_files_hash((self.path / self.spec.lm_eval.include_path).resolve())
            return hash_obj(self.spec.model_dump(exclude={"description", "repeats"}), files)
        return hash_obj(self.spec.model_dump(exclude={"description", "repeats"}), [e.hash for e in self.examples])

    @cached_property
    def _template(self) -> Any:
        return _environment().from_string(self.spec.prompt)

    def render(self, example: Example) -> str:
        """The prompt for one example (Jinja2, sandboxed, undefined variables are errors)."""
        return self._template.render({"range": _budget_range(), **_context(example.input)})

    def choices_for(self, example: Example) -> list[str]:
        if self.spec.choices is not None:
            return list(self.spec.choices)
        return list(example.input[self.spec.choices_field])

    def target_index(self, example: Example) -> int:
        choices = self.choices_for(example)
        exp = example.expected
        if isinstance(exp, int) and not isinstance(exp, bool):
            return exp
        return choices.index(exp)

    def check_config(self) -> list[dict[str, Any]]:
        """The checks as they score: name, options, and the code of any check written by the user."""
        out = []
        for c in self.check_specs:
            d = c.as_dict()
            code = code_identity(c)
            if code:
                d["code"] = code
            out.append(d)
        return out


def _budget_range() -> Any:
    """``range`` for one rendering: the sandbox caps each range, this caps them all together, so
    nested loops cannot keep a suite from loading for hours."""
    left = [MAX_TEMPLATE_LOOPS]

    def budget_range(*args: int) -> range:
        from jinja2.exceptions import SecurityError

        rng = range(*args)
        left[0] -= len(rng)
        if left[0] < 0:
            raise SecurityError(f"the template's loops go over more than {MAX_TEMPLATE_LOOPS:,} range() items")
        return rng

    return budget_range


def _environment() -> Any:
    from jinja2 import StrictUndefined
    from jinja2.exceptions import SecurityError
    from jinja2.sandbox import SandboxedEnvironment

    class _Sandbox(SandboxedEnvironment):
        """Multiplication and powers are checked before they run: ``'x' * 10**12`` or ``9**9**9``
        would take all memory or hang the load."""

        intercepted_binops = frozenset({"*", "**"})

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**" and _int(left) and _int(right) and abs(left) > 1 and right > 1024:
                raise SecurityError(f"the template computes a power too large ({left} ** {right})")
            if operator == "*":
                for seq, n in ((left, right), (right, left)):
                    if isinstance(seq, (str, list, tuple)) and _int(n) and len(seq) * n > MAX_TEMPLATE_SIZE:
                        raise SecurityError(f"the template builds a value of {len(seq) * n:,} items; "
                                            f"the limit is {MAX_TEMPLATE_SIZE:,}")
            return super().call_binop(context, operator, left, right)

    return _Sandbox(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _context(inp: Any) -> dict[str, Any]:
    if isinstance(inp, dict):
        return {"input": inp, **inp}
    return {"input": inp}


def template_variables(template: str) -> set[str]:
    from jinja2 import meta

    env = _environment()
    return meta.find_undeclared_variables(env.parse(template))


@printable_errors()
def read_suite_header(suite_dir: Path) -> tuple[SuiteEntry, YamlDoc]:
    """Parse and type-check ``suite.yaml`` alone (cheap: used to list suites by name)."""
    doc = load_yaml(suite_dir / SUITE_FILE)
    try:
        entry = SuiteEntry.model_validate(doc.data)
    except ValidationError as exc:
        raise pydantic_error(doc, exc) from None
    if entry.name is None:
        entry.name = suite_dir.name
    return entry, doc


@printable_errors()
def load_suite(suite_dir: Path) -> Suite:
    """Load and fully validate a suite; any problem is one :class:`TollgateInputError`."""
    entry, doc = read_suite_header(suite_dir)
    yaml_path = str(doc.path)
    if (entry.repeats or 1) > 1 and (entry.lm_eval is not None or entry.task == "choice"):
        raise TollgateInputError(f"a {'lm-eval' if entry.lm_eval is not None else 'choice'} suite's answers are "
                                 f"deterministic (log-likelihoods), so repeating them proves nothing; remove "
                                 f"'repeats' or make it 1.", file=yaml_path, line=doc.line_of(("repeats",)),
                                 field="repeats")
    if entry.lm_eval is not None:
        return _load_lm_eval_suite(suite_dir, entry, doc)
    if entry.task == "choice" and (entry.choices is None) == (entry.choices_field is None):
        raise TollgateInputError("a choice task needs exactly one of 'choices' (fixed options) or "
                                 "'choices_field' (the input field that lists them).",
                                 file=yaml_path, line=doc.line_of(("task",)), field="choices")
    try:
        variables = template_variables(entry.prompt)
    except Exception as exc:  # jinja2.TemplateSyntaxError
        raise TollgateInputError(f"invalid template: {one_line(str(exc)).rstrip('.')}.", file=yaml_path,
                                 line=doc.line_of(("prompt",)), field="prompt") from None

    raw_checks = entry.checks if entry.checks is not None else DEFAULT_CHECKS[entry.task]
    if not raw_checks:
        raise TollgateInputError("needs at least one check.", file=yaml_path, line=doc.line_of(("checks",)),
                                 field="checks")
    specs, fns = [], []
    for i, raw in enumerate(raw_checks):
        line = doc.line_of(("checks", i))
        spec = parse_check_entry(raw, file=yaml_path, line=line, field=f"checks[{i}]")
        fns.append(build_check(spec, file=yaml_path, line=line, field=f"checks[{i}]"))
        tasks = getattr(checks.get(spec.name), "tasks", TASKS)
        if entry.task not in tasks:
            raise TollgateInputError(f"check '{spec.name}' scores {' or '.join(tasks)} tasks, not '{entry.task}'.",
                                     file=yaml_path, line=line, field=f"checks[{i}]")
        specs.append(spec)

    data_path = suite_dir / entry.data
    examples = load_examples(data_path)
    for ex in examples:
        _check_example(entry, variables, ex, data_path)
    suite = Suite(name=entry.name or suite_dir.name, kind=entry.kind, task=entry.task, path=suite_dir,
                  spec=entry, check_specs=specs, checks=fns, examples=examples)
    if entry.source_suite in (None, suite.name):
        check_references(examples, {e.id: e for e in examples}, data_path, suite.name)
    for ex in examples:  # a template that fails on one example fails here, not half-way through a run
        try:
            suite.render(ex)
        except Exception as exc:  # jinja2 UndefinedError, SecurityError, TypeError in a filter
            raise TollgateInputError(f"the prompt template fails on this example: {type(exc).__name__}: "
                                     f"{one_line(str(exc)).rstrip('.')}.",
                                     file=data_path, line=ex.line, field="prompt") from None
    return suite


def _load_lm_eval_suite(suite_dir: Path, entry: SuiteEntry, doc: YamlDoc) -> Suite:
    from harness.lmeval_bridge import check_tasks

    if entry.kind not in ("general", "baseline"):
        raise TollgateInputError(f"lm-eval tasks make a 'general' or 'baseline' suite, not '{entry.kind}'.",
                                 file=doc.path, line=doc.line_of(("kind",)), field="kind")
    check_tasks(doc.path, (suite_dir / entry.lm_eval.include_path).resolve(), entry.lm_eval.tasks)
    return Suite(name=entry.name or suite_dir.name, kind=entry.kind, task="lm-eval", path=suite_dir, spec=entry,
                 check_specs=[], checks=[], examples=[])


def _check_example(entry: SuiteEntry, variables: set[str], ex: Example, path: Path) -> None:
    available = set(ex.input) | {"input"} if isinstance(ex.input, dict) else {"input"}
    missing = sorted(variables - available)
    if missing:
        raise TollgateInputError(
            f"the prompt template uses {{{{ {missing[0]} }}}}, which this example's input does not have "
            f"(it has: {one_line(', '.join(sorted(available - {'input'})), 200) or 'plain text only'}).",
            file=path, line=ex.line, field=f"input.{missing[0]}")
    if entry.task != "choice":
        return
    if entry.choices_field is not None:
        opts = ex.input.get(entry.choices_field) if isinstance(ex.input, dict) else None
        if not (isinstance(opts, list) and len(opts) >= 2 and all(isinstance(o, str) for o in opts)):
            raise TollgateInputError("must be a list of at least two option strings.", file=path, line=ex.line,
                                     field=field_path(("input", entry.choices_field)))
    else:
        opts = entry.choices
    exp = ex.expected
    if isinstance(exp, int) and not isinstance(exp, bool):
        if not 0 <= exp < len(opts):
            raise TollgateInputError(f"index {exp} is outside the {len(opts)} options.", file=path,
                                     line=ex.line, field="expected")
    elif not (isinstance(exp, str) and exp in opts):
        raise TollgateInputError(f"must be one of the options or an index into them; got {exp!r}.",
                                 file=path, line=ex.line, field="expected")


def suite_headers(suite_dirs: list[Path]) -> dict[str, Path]:
    """Suite name -> folder, for every suite of the project; duplicate names are an error."""
    out: dict[str, Path] = {}
    for d in suite_dirs:
        entry, doc = read_suite_header(d)
        name = entry.name or d.name
        if name in out:
            raise TollgateInputError(f"suite name '{name}' is also used by {out[name]}.", file=doc.path,
                                     line=doc.line_of(("name",)), field="name")
        out[name] = d
    return out


def link_sources(suites: list[Suite], dirs: dict[str, Path]) -> list[Suite]:
    """Each suite whose behavioural examples point into another suite gets that suite (loaded if
    not among ``suites``, and so on down a chain) as ``source``; sources come first in the returned
    list, so their answers exist when the examples that compare with them are scored."""
    by_name = {s.name: s for s in suites}
    ordered: list[Suite] = []

    def fail(s: Suite, msg: str) -> TollgateInputError:
        doc = load_yaml(s.path / SUITE_FILE)
        return TollgateInputError(msg, file=doc.path, line=doc.line_of(("source_suite",)), field="source_suite")

    def visit(s: Suite, chain: tuple[str, ...]) -> None:
        if any(o is s for o in ordered):
            return
        name = s.spec.source_suite
        if name is not None and name != s.name:
            if name in chain:
                raise fail(s, f"source suites loop: {' -> '.join((*chain, s.name, name))}.")
            if name not in by_name and name not in dirs and s.source is None:
                raise fail(s, f"names suite '{name}', which the project does not have "
                              f"(it has: {', '.join(sorted(dirs))}).")
            if s.has_behaviour:
                if name not in by_name:
                    by_name[name] = s.source if s.source is not None else load_suite(dirs[name])
                src = by_name[name]
                if src.task != s.task:
                    raise fail(s, f"source suite '{name}' is a {src.task} task, this one {s.task}; answers of "
                                  f"different tasks cannot be compared.")
                check_references(s.examples, {e.id: e for e in src.examples}, s.path / s.spec.data, name)
                s.source = src
                visit(src, (*chain, s.name))
        ordered.append(s)

    for s in suites:
        visit(s, ())
    return ordered
