"""Typed configs and YAML recipes: ``-c recipe.yaml -c key=value -c lora.r=16``.

A recipe is a YAML mapping validated by one pydantic model per component (``extra="forbid"``, so a
misspelt key is an error, not a silent default). ``load_config(cls, files, overrides)`` deep-merges
the files in order, applies ``dotted.key=value`` overrides (values parsed as YAML: ``lora.r=16`` is
an int, ``trl.learning_rate=2e-4`` a float, ``model.name=smollm2`` a string), and validates. An error
names the key and where its value came from (the file, or ``-c key=value``).

The training recipes live beside their trainers (``reactlab.train.recipes``); this module holds the
run's configs, the one model reference ``ModelRef`` and the loading machinery they share.

>>> cfg = load_config(RunConfig, [], ["out=/o", "limit=5", "model=smollm2", "options.cot_sc.k=5"])
>>> cfg.limit, cfg.model.name, cfg.options.cot_sc.k
(5, 'smollm2', 5)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from reactlab.agents.make import AgentOptions


class ConfigError(ValueError):
    """A recipe that cannot be loaded; the message names the file and key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class ModelRef(_Strict):
    """A model reference, for agents and trainers alike. ``name``: a model spec
    (``reactlab.models.parse_model``: ``smollm2``, ``hf:PATH_OR_ID``, a dir, a ``.gguf``,
    ``openai:MODEL``, ``scripted:FILE``; training and export need a local one). ``adapter``: a PEFT
    LoRA dir trained on that base (an SFT run's ``out``), to run or to train on from. ``dtype``:
    ``auto`` = fp32 on CPU, bf16 on CUDA. ``attn_implementation``: for ``from_pretrained`` when
    training (None: transformers' default, SDPA). A plain string means ``{name: ...}``."""

    name: str
    adapter: str | None = None
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"
    attn_implementation: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    def label(self) -> str:
        """How the model is named in trajectories and ``training.json``: the spec, ``+adapter`` when set."""
        return self.name + (f"+{self.adapter}" if self.adapter else "")


class RunConfig(_Strict):
    """``reactlab run`` (and every stage of ``reactlab demo``): an agent over a task's examples.

    ``task``: a name in ``reactlab.tasks.TASKS`` or ``module:Class``. ``split`` / ``data``: the
    task's split, or a file in the task's layout instead (then ``split`` is ignored). ``limit``:
    the first N examples (after shuffling with ``seed`` when given). ``agent``: ``react`` or
    ``oracle`` or ``pipeline`` (Answer -> Evaluate, multiple choice); ``method``: the agent's method
    (None: its default; react: ``react``, ``act``, ``cot``, ``cot_sc``, ``react_then_cot_sc``,
    ``cot_sc_then_react``, ``reflexion``; pipeline: ``answer_evaluate``, ``answer``, ``direct``);
    ``style``: ``completion`` (the paper's few-shot text), ``chat`` (FireAct, zero-shot) or ``tools``
    (native function calling, methods react and act; its system text: ``options.react.tools_system``);
    ``prompt``: a packaged prompt name, a YAML file or ``zeroshot`` (None: the task's default).
    ``model``: the model of the ``default`` role; ``roles``: models of other roles, for agents
    that ask several models (a pipeline). ``max_steps``: steps before the forced ``finish[]``.
    ``temperature`` / ``samples``: sampled runs of the react agent (methods react, act, cot), e.g.
    for preference data: each example is run ``samples`` times, as ids ``<id>#1`` .. ``<id>#K``,
    every step sampled at ``temperature`` with a seed derived from the episode id and step (so a
    resumed run samples what an uninterrupted one would). 0 (default): greedy, one episode each.
    ``batch_size``: episodes live at once (one model batch per step); ``workers``: concurrent
    requests of an ``openai:`` model. ``corpus``: page corpora for the wiki (default: vendored).
    ``order_by``: ``budget:PATH`` starts the episodes a budget predictor (``reactlab budget train``)
    says are longest first (less tail; what each episode does is unchanged, so not part of the run's
    identity); None: the task's order. ``token_budget``: ``budget:PATH`` gives each react / act
    episode ``token_budget_slack`` x the upper edge of its predicted token bucket as its budget of
    generated tokens (``reactlab.budget.schedule``; part of the run's identity).
    ``options``: each agent's own knobs (``reactlab.agents.AgentOptions``): ``options.cot_sc.k`` /
    ``.temperature`` (CoT-SC and its back-offs; the paper's 21 and 0.7), ``options.reflexion.trials``,
    ``options.pipeline.samples`` / ``.temperature`` / ``.hint``, ``options.react.max_new_tokens`` / ``.tools_system``.
    The flat spellings ``sc_k``, ``sc_temperature``, ``reflexion_trials``, ``answer_samples``,
    ``answer_temperature`` and ``hint`` still work (``FLAT_OPTIONS``).
    """

    out: str
    task: str = "hotpotqa"
    split: str = "eval"
    data: str | None = None
    limit: int | None = Field(default=None, ge=1)
    seed: int | None = None
    agent: str = "react"
    method: str | None = None
    style: Literal["completion", "chat", "tools"] = "completion"
    prompt: str | None = None
    model: ModelRef | None = None
    roles: dict[str, ModelRef] = Field(default_factory=dict)
    max_steps: int = Field(default=7, ge=1, le=1000)
    temperature: float = Field(default=0.0, ge=0)
    samples: int = Field(default=1, ge=1)
    batch_size: int = Field(default=32, ge=1, le=65536)
    workers: int = Field(default=8, ge=1, le=1024)
    corpus: list[str] = Field(default_factory=list)
    order_by: str | None = None
    token_budget: str | None = None
    token_budget_slack: float = Field(default=1.5, gt=0)
    options: AgentOptions = Field(default_factory=AgentOptions)

    @model_validator(mode="before")
    @classmethod
    def _flat_options(cls, v: Any) -> Any:
        """The flat spellings of agent options (``-c sc_k=5``) moved to their place in ``options``."""
        if not isinstance(v, dict) or not any(k in v for k in FLAT_OPTIONS):
            return v
        v = dict(v)
        options = dict(v.get("options") or {})
        for flat, (agent, key) in FLAT_OPTIONS.items():
            if flat in v:
                own = dict(options.get(agent) or {})
                value = v.pop(flat)
                if key in own and own[key] != value:
                    raise ValueError(f"{flat}={value!r} and options.{agent}.{key}={own[key]!r} set one option twice "
                                     f"({flat} is its old spelling): give it once")
                own[key] = value
                options[agent] = own
        v["options"] = options
        return v


FLAT_OPTIONS: dict[str, tuple[str, str]] = {
    "sc_k": ("cot_sc", "k"),
    "sc_temperature": ("cot_sc", "temperature"),
    "reflexion_trials": ("reflexion", "trials"),
    "answer_samples": ("pipeline", "samples"),
    "answer_temperature": ("pipeline", "temperature"),
    "hint": ("pipeline", "hint"),
}
"""``RunConfig``'s flat spellings of agent options (the README's ``-c sc_k=5``) -> (agent, key) in ``options``."""


class EvalTask(_Strict):
    """One task of an evaluation matrix: ``name`` (as ``RunConfig.task``), its ``split`` or ``data``
    file, and ``limit`` / ``seed`` (shuffle before the limit) / ``max_steps`` when this task needs its
    own (FEVER: 5 steps in the paper)."""

    name: str
    split: str = "eval"
    data: str | None = None
    limit: int | None = Field(default=None, ge=1)
    seed: int | None = None
    max_steps: int | None = Field(default=None, ge=1)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v


class EvalConfig(_Strict):
    """``reactlab eval``: models x tasks x methods, each cell a run directory
    ``out/<model>/<task>/<method>``, then ``out/table.md`` and ``out/table.csv``. ``run``: what every
    cell's ``RunConfig`` gets besides (``limit``, ``seed``, ``batch_size``, ``options``, ``sc_k``, ``style``, ...);
    a task's own ``limit`` / ``max_steps`` win over it."""

    out: str
    models: list[ModelRef] = Field(min_length=1)
    tasks: list[EvalTask] = Field(min_length=1)
    methods: list[str] = Field(default_factory=lambda: ["react"], min_length=1)
    run: dict[str, Any] = Field(default_factory=dict)


# --- YAML ----------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """YAML 1.2's scalars, not 1.1's: ``2e-4`` is a float (1.1 wants ``2.0e-4``) and only
    ``true``/``false`` are booleans (1.1 also reads ``no``, ``off``, ``yes``... so TRL's
    ``save_strategy: no`` would arrive as ``False``)."""


# A private copy of the resolver table, without YAML 1.1's booleans; then 1.2's booleans and floats.
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in rs if tag != "tag:yaml.org,2002:bool"]
    for ch, rs in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))

_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                   |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                   |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                   |[-+]?\.(?:inf|Inf|INF)
                   |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."),
)


def parse_value(text: str) -> Any:
    """An override's value, read as YAML (so ``16`` is an int and ``[q_proj, v_proj]`` a list).

    >>> parse_value("16"), parse_value("2e-4"), parse_value("true"), parse_value("no"), parse_value("null")
    (16, 0.0002, True, 'no', None)
    """
    return yaml.load(text, Loader=_Loader) if text.strip() else ""


def find_recipe(spec: str | Path) -> Path:
    """A recipe file: ``spec`` itself when it exists, else the packaged recipe of that name
    (``sft_smollm2_lora`` or ``sft_smollm2_lora.yaml``: ``reactlab.paths.recipes_dir``), else
    ``spec`` unchanged (reading it then says it is missing).

    >>> find_recipe("sft_smollm2_lora").name
    'sft_smollm2_lora.yaml'
    """
    path = Path(spec)
    if path.exists() or path.parent != Path("."):
        return path
    from reactlab.paths import recipes_dir

    packaged = recipes_dir() / (path.name if path.suffix in (".yaml", ".yml") else f"{path.name}.yaml")
    return packaged if packaged.is_file() else path


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A recipe file (or packaged recipe name: ``find_recipe``) as a mapping (an empty file is
    ``{}``); a parse error names the file."""
    path = find_recipe(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_Loader)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a YAML text file ({e.reason} at byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a recipe must be a mapping of keys, not {type(data).__name__}")
    return data


# --- merge + overrides ---------------------------------------------------------------------------


def _merge(dst: dict[str, Any], src: dict[str, Any], origin: str, where: dict[str, str], prefix: str = "") -> None:
    """Deep-merge ``src`` into ``dst`` (mappings merge, anything else replaces) and record, for every
    key path written, the ``origin`` it came from (for error messages)."""
    for k, v in src.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v, origin, where, key + ".")
        else:
            dst[k] = v
        where[key] = origin


def split_key_value(item: str, flag: str, last: bool = False) -> tuple[str, str]:
    """``KEY=VALUE`` -> ``(KEY, VALUE text)``, split at the first ``=`` (the last with ``last``);
    a ``ValueError`` naming ``flag`` when there is no ``=`` or no key. Every ``KEY=VALUE`` option of
    every command is read here.

    >>> split_key_value("lora.r=16", "-c"), split_key_value("a=b=0.5", "--mix", last=True)
    (('lora.r', '16'), ('a=b', '0.5'))
    """
    key, sep, value = item.rpartition("=") if last else item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
    return key.strip(), value


def split_role(item: str) -> tuple[str, str]:
    """A ``--model`` / ``--adapter`` value as ``(role, value)``: ``ROLE=VALUE`` when the part before the
    first ``=`` is an identifier, else the default role ``""`` (a path may hold ``=``).

    >>> split_role("answer=out/a"), split_role("out/a"), split_role("runs/x=1/a")
    (('answer', 'out/a'), ('', 'out/a'), ('', 'runs/x=1/a'))
    """
    role, sep, value = item.partition("=")
    return (role, value) if sep and role.isidentifier() else ("", item)


def parse_options(items: Sequence[str], flag: str) -> dict[str, Any]:
    """``KEY=VALUE`` items as a mapping, values read as YAML (``parse_value``).

    >>> parse_options(["skip_invalid=true", "pairs_per_question=2", "continuation=turn"], "--option")
    {'skip_invalid': True, 'pairs_per_question': 2, 'continuation': 'turn'}
    """
    out: dict[str, Any] = {}
    for item in items:
        key, text = split_key_value(item, flag)
        out[key] = parse_value(text)
    return out


def apply_override(data: dict[str, Any], spec: str) -> tuple[str, Any]:
    """Set ``a.b.c=value`` in the nested mapping ``data``; return ``(key, value)``.

    >>> d = {"lora": {"r": 8}}
    >>> apply_override(d, "lora.r=16"), d
    (('lora.r', 16), {'lora': {'r': 16}})
    """
    key, text = split_key_value(spec, "-c")
    if any(not p for p in key.split(".")):
        raise ConfigError(f"-c {spec!r}: an override is KEY=VALUE with a dotted key (e.g. lora.r=16)")
    *parents, leaf = key.split(".")
    node = data
    for i, p in enumerate(parents):
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise ConfigError(f"-c {spec!r}: {'.'.join(parents[: i + 1])} is {nxt!r}, not a mapping "
                              f"(write it as a mapping in the recipe, e.g. {p}: {{name: {nxt}}})")
        node = nxt
    value = parse_value(text)
    node[leaf] = value
    return key, value


def split_specs(specs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Split ``-c`` arguments into recipe files and ``key=value`` overrides (order kept within each).
    A spec with ``=`` is an override unless it names an existing file.

    >>> split_specs(["configs/x.yaml", "lora.r=16"])
    (['configs/x.yaml'], ['lora.r=16'])
    """
    files: list[str] = []
    overrides: list[str] = []
    for s in specs:
        (overrides if "=" in s and not Path(s).is_file() else files).append(s)
    return files, overrides


T = TypeVar("T", bound=BaseModel)


def load_config(
    cls: type[T],
    files: Sequence[str | Path] = (),
    overrides: Sequence[str] = (),
    values: dict[str, Any] | None = None,
    values_origin: str = "the command line",
) -> T:
    """Merge the YAML ``files`` in order, then ``values`` (typed, e.g. a command's flags), then apply
    ``overrides`` (``dotted.key=value``), and validate as ``cls``.

    Raises ``ConfigError`` naming each bad key with the file (or override) that set it, or the
    missing key when a required one was never set.
    """
    data: dict[str, Any] = {}
    where: dict[str, str] = {}
    for f in files:
        _merge(data, read_yaml(f), str(f), where)
    if values:
        _merge(data, values, values_origin, where)
    for spec in overrides:
        key, value = apply_override(data, spec)
        where[key] = f"-c {spec}"
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        raise ConfigError(_explain(cls, e, where, files)) from None


def _explain(cls: type[BaseModel], err: ValidationError, where: dict[str, str], files: Sequence[str | Path]) -> str:
    head = f"invalid {cls.__name__} recipe ({', '.join(map(str, files)) or 'no files'}):"
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        key = ".".join(loc)
        # The deepest key we know the origin of (pydantic may add a type tag to the location).
        origin = next((where[".".join(loc[:n])] for n in range(len(loc), 0, -1) if ".".join(loc[:n]) in where), None)
        if e["type"] == "extra_forbidden":
            parent: Any = cls
            for p in loc[:-1]:
                fld = getattr(parent, "model_fields", {}).get(p)
                parent = fld.annotation if fld is not None else None
            known = sorted(getattr(parent, "model_fields", {}))
            msg = "unknown key" + (f" (known here: {', '.join(known)})" if known else "")
        elif e["type"] == "missing":
            msg = "required, but no file or override sets it"
        else:
            msg = f"{e['msg']} (got {e.get('input')!r})"
        lines.append(f"{key}: {msg}" + (f" [from {origin}]" if origin else ""))
    return f"{head} {'; '.join(lines)}"  # one line, every problem
