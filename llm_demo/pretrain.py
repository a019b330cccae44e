"""Build the bundled tiny OPT model from nothing: corpus -> byte-level BPE tokenizer -> pre-trained OPT.

    python -m llm_demo.pretrain --out assets/tiny-opt

Deterministic: the corpus comes from :func:`llm_demo.corpus.corpus_documents` with a fixed seed, the
tokenizer is trained with ``tokenizers`` (deterministic BPE), and the model is initialised and trained
with fixed torch seeds on the CPU with ``torch.set_num_threads(1)`` (one thread: bit-identical results
run to run, and no slowdown when the other core is busy). The weights are saved with safetensors in
float16 (the folder is about 2 MB); ``config.json`` says ``float32`` so they load as float32.

Reload offline with ``AutoModelForCausalLM.from_pretrained(dir)`` and ``AutoTokenizer.from_pretrained(dir)``
or :func:`llm_demo.tasks.load_model`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import OPTConfig, OPTForCausalLM, PreTrainedTokenizerFast

from .corpus import corpus_documents

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # OPT's ids: 0, 1 (pad), 2 (bos = eos), 3


def train_tokenizer(texts: list[str], vocab_size: int = 1000) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` with OPT's special tokens.

    Encoding adds ``</s>`` in front, as OPT's tokenizer does; padding token ``<pad>`` (id 1).
    """
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("</s>")
    tok.post_processor = processors.TemplateProcessing(
        single="</s> $A", pair="</s> $A </s> $B", special_tokens=[("</s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="</s>", eos_token="</s>", unk_token="<unk>",
        pad_token="<pad>", padding_side="left", model_max_length=128,
    )


def make_config(vocab_size: int, hidden: int = 128, layers: int = 4, ffn: int = 512, heads: int = 4,
                max_positions: int = 128) -> OPTConfig:
    """An OPT configuration for the tiny model (pre-layer-norm, no dropout, tied embeddings)."""
    return OPTConfig(
        vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=layers, ffn_dim=ffn,
        num_attention_heads=heads, max_position_embeddings=max_positions, word_embed_proj_dim=hidden,
        do_layer_norm_before=True, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
        layerdrop=0.0, pad_token_id=1, bos_token_id=2, eos_token_id=2, tie_word_embeddings=True,
    )


def token_stream(texts: list[str], tokenizer: PreTrainedTokenizerFast) -> torch.Tensor:
    """All documents tokenized (each starting with ``</s>``) and concatenated into one 1-D tensor."""
    ids = tokenizer(texts, add_special_tokens=True)["input_ids"]
    return torch.tensor([i for doc in ids for i in doc], dtype=torch.long)


def pretrain(
    out: str | Path,
    steps: int = 1013,
    n_documents: int = 20000,
    vocab_size: int = 1000,
    batch_size: int = 16,
    seq_len: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 0.01,
    warmup: int = 50,
    seed: int = 0,
    verbalizer_tie: float = 0.03,
    log_every: int = 50,
    callback: Callable[[int, OPTForCausalLM, PreTrainedTokenizerFast], None] | None = None,
) -> dict:
    """Generate the corpus, train the tokenizer, pre-train an OPT with AdamW and save it to ``out``.

    Batches are ``batch_size`` random windows of ``seq_len`` tokens from the token stream (drawn
    with a seeded generator). The learning rate warms up linearly for ``warmup`` steps, then stays
    constant, so the model after N steps does not depend on the total number of steps. ``callback(step, model, tokenizer)``, if given, runs every ``log_every``
    steps (used to measure zero-shot accuracy while tuning). Returns the run's summary, also saved
    as ``pretrain_info.json``.
    """
    torch.set_num_threads(1)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    docs = corpus_documents(n_documents=n_documents, seed=seed, verbalizer_tie=verbalizer_tie)
    tokenizer = train_tokenizer(docs, vocab_size=vocab_size)
    stream = token_stream(docs, tokenizer)
    config = make_config(len(tokenizer))
    model = OPTForCausalLM(config)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"corpus: {len(docs)} documents, {stream.numel()} tokens; vocab {len(tokenizer)}; "
          f"model {n_params / 1e6:.2f}M parameters", file=sys.stderr)

    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr, betas=(0.9, 0.98))

    def lr_at(step: int) -> float:
        # Linear warm-up, then constant: a run of N steps is exactly the first N steps of a longer
        # run, so the number of steps can be tuned from one long run's checkpoints.
        return lr * min(1.0, (step + 1) / warmup)

    gen = torch.Generator().manual_seed(seed + 1)
    losses: list[float] = []
    model.train()
    for step in range(steps):
        starts = torch.randint(0, stream.numel() - seq_len, (batch_size,), generator=gen)
        batch = torch.stack([stream[s:s + seq_len] for s in starts.tolist()])
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = model(input_ids=batch, labels=batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == steps:
            recent = sum(losses[-log_every:]) / len(losses[-log_every:])
            print(f"step {step + 1}/{steps}  loss {recent:.3f}  {time.perf_counter() - t0:.0f}s",
                  file=sys.stderr, flush=True)
            if callback is not None:
                model.eval()
                callback(step + 1, model, tokenizer)
                model.train()
    train_time = time.perf_counter() - t0
    model.eval()
    info = {
        "steps": steps, "n_documents": n_documents, "vocab_size": len(tokenizer), "batch_size": batch_size,
        "seq_len": seq_len, "lr": lr, "weight_decay": weight_decay, "warmup": warmup, "seed": seed,
        "verbalizer_tie": verbalizer_tie, "corpus_tokens": int(stream.numel()), "parameters": n_params,
        "final_loss": sum(losses[-log_every:]) / len(losses[-log_every:]),
        "train_time_s": round(train_time, 1), "threads": 1, "torch": torch.__version__,
    }
    save(model, tokenizer, out, info)
    return info


def save(model: OPTForCausalLM, tokenizer: PreTrainedTokenizerFast, out: str | Path, info: dict) -> None:
    """Save weights as float16 safetensors (config says float32), the tokenizer and ``pretrain_info.json``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    half = OPTForCausalLM(model.config)
    half.load_state_dict(model.state_dict())
    half.to(torch.float16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    cfg_path = out / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float32"  # stored as float16 on disk, computed in float32
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (out / "pretrain_info.json").write_text(json.dumps(info, indent=2) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m llm_demo.pretrain --out assets/tiny-opt [--steps N ...]``."""
    p = argparse.ArgumentParser(description="Pre-train the bundled tiny OPT model from a generated corpus.")
    p.add_argument("--out", default="assets/tiny-opt", help="output folder (default: assets/tiny-opt)")
    p.add_argument("--steps", type=int, default=1013, help="AdamW steps (default: 1013, see assets/README.md)")
    p.add_argument("--documents", type=int, default=20000, help="corpus documents (default: 20000)")
    p.add_argument("--vocab-size", type=int, default=1000, help="BPE vocabulary size (default: 1000)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--verbalizer-tie", type=float, default=0.03,
                   help="fraction of tied-opening corpus reviews ending with 'It was good/bad.' (default: 0.03)")
    a = p.parse_args(argv)
    info = pretrain(a.out, steps=a.steps, n_documents=a.documents, vocab_size=a.vocab_size,
                    batch_size=a.batch_size, seq_len=a.seq_len, lr=a.lr, seed=a.seed,
                    verbalizer_tie=a.verbalizer_tie)
    print(f"saved {a.out}: {info['parameters'] / 1e6:.2f}M parameters, final loss {info['final_loss']:.3f}, "
          f"{info['train_time_s']:.0f}s")


if __name__ == "__main__":
    main()
