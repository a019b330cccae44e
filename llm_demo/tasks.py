"""Tasks, models and the prompt-scoring loss used to fine-tune a causal LM.

A task is a set of JSON-lines files of ``{"text": ..., "label": k}`` plus a prompt template and one
verbalizer per label (as MeZO does for SST-2)::

    prompt  = template.format(text=text)              # e.g. "<review> It was"
    logits  = model(prompt).logits[last position, verbalizer token ids]     # [n_labels]
    loss    = cross_entropy(logits, label);  prediction = argmax(logits)

Typical use (a zeroth-order optimizer's closure is just ``lambda: loss_fn(model, batch)``)::

    model, tok = load_model(BUNDLED_MODEL)
    task = load_task(BUNDLED_TASK)
    train = encode(task, tok, task.splits["train"])
    batch = subset(train, torch.randint(len(train["labels"]), (16,)))
    opt.step(lambda: loss_fn(model, batch))
    eval_loss, eval_acc = evaluate(model, encode(task, tok, task.splits[task.eval_split]))
"""

from __future__ import annotations

import inspect
import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_MODEL: Path = _ROOT / "assets" / "tiny-opt"
"""The bundled tiny OPT checkpoint (made by ``python -m llm_demo.pretrain``)."""
BUNDLED_TASK: Path = _ROOT / "assets" / "sentiment"
"""The bundled sentiment task (made by ``python -m llm_demo.corpus``)."""
BUNDLED_GRADED: Path = _ROOT / "assets" / "graded"
"""The bundled graded task: negative / mixed / positive (made by ``python -m llm_demo.corpus --task graded``)."""
BUNDLED_TASKS: dict[str, Path] = {"graded": BUNDLED_GRADED, "sentiment": BUNDLED_TASK}
"""The bundled tasks by name."""

DEFAULT_TEMPLATE = "{text} It was"
DEFAULT_VERBALIZERS = (" bad", " good")
SPLITS = ("train", "dev", "test")

# Memory bounds. A fast tokenizer holds ~150-200 bytes per character of its input while it encodes,
# and a prompt is tokenized whole before it is cut to ``max_length`` tokens, so one 55 MB text cost
# 9.4 GB. Texts, lines and templates are bounded at load, and ``encode`` tokenizes in chunks.
MAX_TEXT_CHARS = 20_000
"""The longest example text accepted (characters); a longer one is refused with its file and line."""
MAX_LINE_CHARS = 8 * MAX_TEXT_CHARS
"""The longest JSON line read (characters, JSON escapes included); a longer line is refused unread."""
MAX_TEMPLATE_CHARS = 2_000
"""The longest prompt template and verbalizer accepted (characters)."""
MAX_INFO_BYTES = 1 << 20
"""The largest ``task.json`` read."""
ENCODE_CHUNK = 32
"""Examples tokenized at once by ``encode`` (bounds the tokenizer's working memory)."""

Batch = dict[str, torch.Tensor]
"""``input_ids`` and ``attention_mask`` [n, L] (left-padded), ``labels`` [n], ``verbalizer_ids`` [k]."""


@dataclass
class Task:
    """A classification task: examples per split, the prompt template and one verbalizer per label."""

    path: Path
    splits: dict[str, list[dict[str, Any]]]
    template: str = DEFAULT_TEMPLATE
    verbalizers: tuple[str, ...] = DEFAULT_VERBALIZERS
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def eval_split(self) -> str:
        """The split to evaluate on during training: ``dev`` if present, else ``test``, else ``train``."""
        return next(s for s in ("dev", "test", "train") if s in self.splits)

    def prompt(self, text: str) -> str:
        """The prompt for one example's text."""
        return self.template.format(text=text)


def _check_info(info: Any, where: str) -> tuple[str, tuple[str, ...]]:
    """Validate a task description's ``template`` and ``verbalizers``; return them (with defaults)."""
    if not isinstance(info, dict):
        raise ValueError(f"{where}: expected a JSON object with 'template' and 'verbalizers'.")
    template = info.get("template", DEFAULT_TEMPLATE)
    if not isinstance(template, str) or "{text}" not in template:
        raise ValueError(f"{where}: 'template' must be a string containing {{text}}, got {template!r:.200}.")
    if len(template) > MAX_TEMPLATE_CHARS:
        raise ValueError(f"{where}: 'template' has {len(template):,} characters; at most "
                         f"{MAX_TEMPLATE_CHARS:,} are allowed.")
    try:  # parsed, never formatted here: "{text:>999999999}" would allocate a gigabyte
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(template)
                  if name is not None]
    except ValueError as e:
        raise ValueError(f"{where}: 'template' is not a valid format string ({e}).") from None
    if fields != [("text", "", None)]:  # a second copy, a width or a conversion multiplies the prompt
        raise ValueError(f"{where}: 'template' must contain the plain field {{text}} exactly once and no other "
                         "field, width or conversion (write {{ and }} for literal braces).")
    verbalizers = info.get("verbalizers", list(DEFAULT_VERBALIZERS))
    if (not isinstance(verbalizers, list) or not 2 <= len(verbalizers) <= 1000
            or not all(isinstance(v, str) and 0 < len(v) <= MAX_TEMPLATE_CHARS for v in verbalizers)):
        raise ValueError(f"{where}: 'verbalizers' must be a list of 2 to 1000 non-empty strings "
                         f"(one per label), got {verbalizers!r:.200}.")
    return template, tuple(verbalizers)


def _lines(path: Path):
    """``(number, line)`` for each line of a UTF-8 text file, reading at most ``MAX_LINE_CHARS`` a line."""
    try:
        with open(path, encoding="utf-8") as f:
            number = 0
            while True:
                line = f.readline(MAX_LINE_CHARS + 1)
                if not line:
                    return
                number += 1
                if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                    raise ValueError(f"{path} line {number}: longer than {MAX_LINE_CHARS:,} characters; a line may "
                                     f"hold one example whose text has at most {MAX_TEXT_CHARS:,} characters.")
                yield number, line
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: cannot be read ({e.__class__.__name__}).") from None


def _read_jsonl(path: Path, n_labels: int | None) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """Read one JSON-lines file; returns (examples, header). A first line without 'text' but with
    'verbalizers' or 'template' is a per-file task description (header)."""
    examples: list[dict[str, Any]] = []
    header: dict[str, Any] | None = None
    for number, line in _lines(path):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            obj = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            msg = e.msg if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise ValueError(f"{where}: not valid JSON ({msg}).") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{where}: expected a JSON object, got {type(obj).__name__}.")
        if not examples and header is None and "text" not in obj and ("verbalizers" in obj or "template" in obj):
            header = obj
            continue
        for name in ("text", "label"):
            if name not in obj:
                raise ValueError(f"{where}: missing field '{name}'.")
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            raise ValueError(f"{where}: field 'text' must be a non-empty string.")
        if len(obj["text"]) > MAX_TEXT_CHARS:
            raise ValueError(f"{where}: field 'text' has {len(obj['text']):,} characters; at most "
                             f"{MAX_TEXT_CHARS:,} are allowed (the model reads only the last tokens anyway).")
        label = obj["label"]
        k = n_labels if n_labels is not None else len(DEFAULT_VERBALIZERS)
        if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label < k:
            allowed = " or ".join(str(i) for i in range(k))
            raise ValueError(f"{where}: field 'label' must be {allowed} (one per verbalizer), got {label!r:.50}.")
        examples.append({"text": obj["text"], "label": label})
    if not examples:
        raise ValueError(f"{path}: contains no examples.")
    return examples, header


def load_task(path_or_dir: str | Path) -> Task:
    """Load a task from a folder (``train/dev/test.jsonl``, any present, plus an optional ``task.json``)
    or from one ``.jsonl`` file (loaded as the ``train`` split).

    The template and verbalizers come from ``task.json`` beside the files, or from a first line of a
    file that has ``template``/``verbalizers`` and no ``text`` (per file; it overrides task.json);
    the defaults are ``"{text} It was"`` and ``[" bad", " good"]``. Raises ``ValueError`` with one
    sentence naming the file (and line) for a wrong path, malformed JSON, or a missing/invalid field.
    """
    path = Path(path_or_dir)
    if path.is_dir():
        files = {s: path / f"{s}.jsonl" for s in SPLITS if (path / f"{s}.jsonl").is_file()}
        if not files:
            raise ValueError(f"{path}: folder has none of train.jsonl, dev.jsonl, test.jsonl.")
        folder = path
    elif path.is_file():
        files = {"train": path}
        folder = path.parent
    else:
        raise ValueError(f"{path}: no such task file or folder.")
    info: dict[str, Any] = {}
    info_path = folder / "task.json"
    if info_path.is_file():
        try:
            if info_path.stat().st_size > MAX_INFO_BYTES:
                raise ValueError(f"{info_path}: larger than {MAX_INFO_BYTES:,} bytes; a task description holds "
                                 "a template and the verbalizers only.")
            info = json.loads(info_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ValueError(f"{info_path}: not valid JSON ({e.__class__.__name__}).") from None
    template, verbalizers = _check_info(info, str(info_path))
    splits: dict[str, list[dict[str, Any]]] = {}
    for split, file in files.items():
        # Peek for a per-file header first, so labels are checked against the right verbalizers.
        header = _read_jsonl_header(file)
        if header is not None:
            template, verbalizers = _check_info(header, f"{file} line 1")
        splits[split], _ = _read_jsonl(file, len(verbalizers))
    return Task(path=path, splits=splits, template=template, verbalizers=verbalizers, info=info)


def _read_jsonl_header(path: Path) -> dict[str, Any] | None:
    """The per-file header of a JSON-lines file (first non-empty line), or None."""
    try:
        for _, line in _lines(path):
            if line.strip():
                obj = json.loads(line)
                if isinstance(obj, dict) and "text" not in obj and ("verbalizers" in obj or "template" in obj):
                    return obj
                return None
    except (ValueError, RecursionError):
        return None  # _read_jsonl reports the problem with its line number
    return None


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """``"auto"`` -> CUDA if available else CPU; anything else as given."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_model(model_dir: str | Path = BUNDLED_MODEL, device: str | torch.device = "cpu",
               dtype: torch.dtype | str = torch.float32) -> tuple[torch.nn.Module, Any]:
    """Load a local Hugging Face causal LM and its tokenizer, offline (``local_files_only=True``).

    Returns ``(model, tokenizer)`` with the model in eval mode on ``device`` (``"auto"`` picks CUDA if
    available) in ``dtype``. The tokenizer gets a pad token (its EOS) if it has none. A path that is
    not a model folder raises ``ValueError``.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(model_dir)
    if not path.is_dir():
        raise ValueError(f"{path}: no such model folder.")
    if not (path / "config.json").is_file():
        raise ValueError(f"{path}: not a Hugging Face model folder (no config.json).")
    if isinstance(dtype, str):
        if not isinstance(getattr(torch, dtype, None), torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r}; use e.g. 'float32', 'bfloat16' or 'float16'.")
        dtype = getattr(torch, dtype)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True, dtype=dtype)
    except Exception as e:  # noqa: BLE001 - the folder's files are input: a truncated safetensors file
        # raises SafetensorError, a bad config.json a TypeError, ...; each is one sentence, not a traceback
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ValueError(f"{path}: cannot load a causal LM and tokenizer from this folder "
                         f"({e.__class__.__name__}: {first}).") from None
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.to(resolve_device(device))
    model.eval()
    return model, tokenizer


def verbalizer_ids(task: Task, tokenizer: Any) -> list[int]:
    """The token id of each verbalizer; ``ValueError`` if one is not exactly one token."""
    ids = []
    for v in task.verbalizers:
        toks = tokenizer(v, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise ValueError(f"verbalizer {v!r} is {len(toks)} tokens for this tokenizer; each verbalizer "
                             f"must be exactly one token.")
        ids.append(toks[0])
    if len(set(ids)) != len(ids):
        raise ValueError(f"verbalizers {list(task.verbalizers)!r} map to the same token.")
    return ids


def encode(task: Task, tokenizer: Any, examples: list[dict[str, Any]], max_length: int = 128) -> Batch:
    """Tokenize ``examples`` as prompts, left-padded to a common length (at most ``max_length``).

    Longer prompts keep their first token (BOS) and their last ``max_length - 1`` tokens, so the
    scored position is always the template's end.
    """
    if max_length < 2:
        raise ValueError(f"max_length must be at least 2, got {max_length}.")
    vids = verbalizer_ids(task, tokenizer)
    ids = []
    for start in range(0, len(examples), ENCODE_CHUNK):  # chunks: the tokenizer's memory stays bounded
        chunk = tokenizer([task.prompt(ex["text"]) for ex in examples[start:start + ENCODE_CHUNK]],
                          add_special_tokens=True)["input_ids"]
        ids += [x if len(x) <= max_length else x[:1] + x[-(max_length - 1):] for x in chunk]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, x in enumerate(ids):
        input_ids[i, width - len(x):] = torch.tensor(x, dtype=torch.long)
        mask[i, width - len(x):] = 1
    return {"input_ids": input_ids, "attention_mask": mask,
            "labels": torch.tensor([ex["label"] for ex in examples], dtype=torch.long),
            "verbalizer_ids": torch.tensor(vids, dtype=torch.long)}


def subset(batch: Batch, indices: torch.Tensor | list[int]) -> Batch:
    """The examples at ``indices``, with columns that are padding in all of them dropped."""
    idx = torch.as_tensor(indices, dtype=torch.long)
    mask = batch["attention_mask"][idx]
    first = int((mask.sum(0) > 0).nonzero()[0]) if mask.numel() else 0
    return {"input_ids": batch["input_ids"][idx, first:], "attention_mask": mask[:, first:],
            "labels": batch["labels"][idx], "verbalizer_ids": batch["verbalizer_ids"]}


def to_device(batch: Batch, device: str | torch.device) -> Batch:
    """The batch's tensors moved to ``device``."""
    return {k: v.to(device) for k, v in batch.items()}


_KEEP_CACHE: dict[type, bool] = {}


def _supports_logits_to_keep(model: torch.nn.Module) -> bool:
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):  # it passes the keyword on to its module
        model = model.module
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # a peft model passes it on
    cls = type(base)
    if cls not in _KEEP_CACHE:
        _KEEP_CACHE[cls] = "logits_to_keep" in inspect.signature(base.forward).parameters
    return _KEEP_CACHE[cls]


def verbalizer_logits(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Logits of the verbalizer tokens at the last position (the batch is left-padded): [n, n_labels].

    Uses ``logits_to_keep=1`` where the model supports it (only the last position is projected).
    """
    device = next(model.parameters()).device
    kwargs: dict[str, Any] = {"input_ids": batch["input_ids"].to(device),
                              "attention_mask": batch["attention_mask"].to(device)}
    if _supports_logits_to_keep(model):
        kwargs["logits_to_keep"] = 1
    logits = model(**kwargs).logits[:, -1, :]
    return logits[:, batch["verbalizer_ids"].to(device)].float()


def loss_fn(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
    """Mean cross-entropy of the labels over the verbalizer logits: a scalar float64 tensor.

    Differentiable when grad is enabled; a ZO optimizer's closure is ``lambda: loss_fn(model, batch)``.
    One scored position per example, so the mean is over examples. It is taken in float64 (the sum of
    the per-example float32 losses, divided by their number): then the mean of equal slices' means, which
    data-parallel ranks average (``llm_demo.distributed``), is the whole batch's mean to float64 round-off,
    and a ZO step's c = (L+ − L−)/(2ε), which magnifies the loss's rounding by 1/(2ε), does not depend on
    how the batch was split.
    """
    logits = verbalizer_logits(model, batch)
    losses = F.cross_entropy(logits, batch["labels"].to(logits.device), reduction="none")
    return losses.double().sum() / losses.numel()


@torch.no_grad()
def evaluate(model: torch.nn.Module, batch: Batch, chunk_size: int = 128) -> tuple[float, float]:
    """``(mean loss, accuracy)`` over all examples of ``batch``, computed in chunks without grad."""
    n = batch["labels"].numel()
    total_loss, correct = 0.0, 0
    for start in range(0, n, chunk_size):
        part = subset(batch, list(range(start, min(n, start + chunk_size))))
        logits = verbalizer_logits(model, part)
        labels = part["labels"].to(logits.device)
        total_loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += int((logits.argmax(-1) == labels).sum())
    return total_loss / n, correct / n
