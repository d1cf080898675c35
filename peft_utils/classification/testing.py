"""Tiny randomly initialised XLM-R models with a word-level tokenizer, built locally.

Used by the tests and smoke grids: the same loading path as a real model folder
(`from_pretrained` on safetensors + a fast tokenizer), no download, seconds to train.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # XLM-R's ids 0..3; <mask> goes last


def make_tiny_model(out_dir: str | Path, texts: Iterable[str], hidden: int = 32, layers: int = 2,
                    heads: int = 4, intermediate: int = 64, max_length: int = 128,
                    seed: int = 0, init_range: float = 0.2, dropout: float = 0.1,
                    architecture: str = "xlm-roberta") -> Path:
    """Write a tiny XLM-R, or BERT (`architecture="bert"`: a pooler feeds its head), with its
    config, safetensors weights and fast tokenizer into `out_dir`."""
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import (BertConfig, BertModel, PreTrainedTokenizerFast, XLMRobertaConfig,
                              XLMRobertaModel)

    out = Path(out_dir)
    words = sorted({w for text in texts for w in re.findall(r"\w+|[^\w\s]", text.lower())})
    vocab = {tok: i for i, tok in enumerate(SPECIALS + words + ["<mask>"])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>",
        special_tokens=[("<s>", 0), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   sep_token="</s>", cls_token="<s>", unk_token="<unk>",
                                   pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=max_length)
    fast.save_pretrained(out)

    config_class, model_class = {"xlm-roberta": (XLMRobertaConfig, XLMRobertaModel),
                                 "bert": (BertConfig, BertModel)}[architecture]
    config = config_class(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=heads, intermediate_size=intermediate,
                          max_position_embeddings=max_length + 2, pad_token_id=1,
                          bos_token_id=0, eos_token_id=2, type_vocab_size=1,
                          initializer_range=init_range, hidden_dropout_prob=dropout,
                          attention_probs_dropout_prob=dropout)
    torch.manual_seed(seed)
    model = model_class(config, add_pooling_layer=architecture == "bert")
    model.save_pretrained(out, safe_serialization=True)
    return out
