"""Tiny randomly initialised seq2seq models built locally, for tests and the smoke grid.

`make_tiny_mt_model` writes a folder that loads like a hub model (config, safetensors weights,
fast tokenizer): a 2+2-layer mBART with a word-level vocabulary taken from NTREX text and one
`<2xx>` target-language tag per language (the tag scheme of peft_utils.mt.tokenize). It
translates nothing: it exercises the pipeline in seconds, without a hub.

`make_tiny_coded_mt_model` writes the same kind of folder for the families whose tokenizer
takes the pair as language codes: NLLB (an M2M100 model, NllbTokenizerFast) and mBART-50
(MBart50TokenizerFast), with every code of the real tokenizer.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from peft_utils.mt.langs import LANGS

SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]   # mBART's ids 0..3


def lang_tag(iso: str) -> str:
    return f"<2{iso}>"


def tiny_seq2seq_config(model_type: str = "mbart", vocab_size: int = 1000, d_model: int = 32,
                        layers: int = 2, ffn: int = 64, heads: int = 4, max_length: int = 256):
    """A small transformers config of `model_type` (mbart, t5, mt5, m2m_100, marian)."""
    from transformers import AutoConfig

    ids = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    if model_type in ("t5", "mt5"):
        return AutoConfig.for_model(model_type, vocab_size=vocab_size, d_model=d_model,
                                    d_kv=d_model // heads, d_ff=ffn, num_layers=layers,
                                    num_decoder_layers=layers, num_heads=heads,
                                    pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return AutoConfig.for_model(
        model_type, vocab_size=vocab_size, d_model=d_model, encoder_layers=layers,
        decoder_layers=layers, encoder_attention_heads=heads, decoder_attention_heads=heads,
        encoder_ffn_dim=ffn, decoder_ffn_dim=ffn, max_position_embeddings=max_length, **ids)


def write_config_folder(folder: str | Path, hf_config) -> Path:
    """A model folder with only config.json: enough for meta-device parameter counts."""
    folder = Path(folder)
    hf_config.save_pretrained(folder)
    return folder


def make_tiny_mt_model(out_dir: str | Path, texts: Iterable[str], d_model: int = 32,
                       layers: int = 2, ffn: int = 64, heads: int = 4, max_vocab: int = 4000,
                       max_length: int = 256, seed: int = 0) -> Path:
    """Write a tiny mBART (config, safetensors weights, fast tokenizer) into `out_dir`; its
    vocabulary: the `max_vocab` most frequent words of `texts` plus every language tag."""
    import torch
    from tokenizers import processors
    from transformers import MBartForConditionalGeneration, PreTrainedTokenizerFast

    out = Path(out_dir)
    tags = [lang_tag(iso) for iso in LANGS]
    tok = word_level_tokenizer(texts, max_vocab, tags)
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   unk_token="<unk>", pad_token="<pad>",
                                   additional_special_tokens=tags, model_max_length=max_length)
    fast.save_pretrained(out)
    config = tiny_seq2seq_config("mbart", len(fast), d_model, layers, ffn, heads, max_length)
    torch.manual_seed(seed)
    MBartForConditionalGeneration(config).save_pretrained(out, safe_serialization=True)
    return out


def word_level_tokenizer(texts: Iterable[str], max_vocab: int, extra: list[str]):
    """A `tokenizers` word-level tokenizer: SPECIALS, then `extra`, then the `max_vocab` most
    frequent words and punctuation marks of `texts`."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    counts = Counter(w for text in texts for w in re.findall(r"\w+|[^\w\s]", text))
    words = [w for w, _ in counts.most_common(max_vocab)]
    vocab = {tok: i for i, tok in enumerate(dict.fromkeys(SPECIALS + extra + words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(),
                                                 pre_tokenizers.Punctuation()])
    return tok


# family -> (model type, fast tokenizer class, the tokenizer's default pair): the defaults
# are not the tests' en->de, so code that forgets to set the run's pair shows.
CODED_FAMILIES = {"nllb": ("m2m_100", "NllbTokenizerFast", ("fra_Latn", "eng_Latn")),
                  "mbart50": ("mbart", "MBart50TokenizerFast", ("fr_XX", "en_XX"))}


def make_tiny_coded_mt_model(out_dir: str | Path, texts: Iterable[str], family: str = "nllb",
                             d_model: int = 32, layers: int = 2, ffn: int = 64, heads: int = 4,
                             max_vocab: int = 4000, max_length: int = 256,
                             seed: int = 0) -> Path:
    """Write a tiny model of a language-code `family` (CODED_FAMILIES) into `out_dir`: the
    real tokenizer class (with all of its language codes) over a word-level vocabulary of
    `texts`. The special tokens' embeddings, which the output layer shares, are zero: a
    random model then emits words rather than one of hundreds of codes (decoded as nothing)
    or </s>. The codes' input embeddings being alike, a test of the pair reads the token
    ids (the source code first) and the forced first token, not the translations."""
    import torch
    import transformers

    model_type, tokenizer_class, (src, tgt) = CODED_FAMILIES[family]
    out = Path(out_dir)
    fast = getattr(transformers, tokenizer_class)(
        tokenizer_object=word_level_tokenizer(texts, max_vocab, []), bos_token="<s>",
        eos_token="</s>", sep_token="</s>", cls_token="<s>", unk_token="<unk>",
        pad_token="<pad>", mask_token="<unk>", src_lang=src, tgt_lang=tgt,
        model_max_length=max_length)
    fast.save_pretrained(out)
    config = tiny_seq2seq_config(model_type, len(fast), d_model, layers, ffn, heads, max_length)
    torch.manual_seed(seed)
    model = transformers.AutoModelForSeq2SeqLM.from_config(config)
    with torch.no_grad():
        model.get_input_embeddings().weight[fast.all_special_ids] = 0
    model.save_pretrained(out, safe_serialization=True)
    return out


def ntrex_texts(root: str | Path, langs: Iterable[str] = ("de",)) -> list[str]:
    """English source and the references of `langs`, for a tiny model's vocabulary."""
    from peft_utils.mt.data import load_ntrex

    texts: list[str] = []
    for i, lang in enumerate(langs):
        frame = load_ntrex(root, lang)
        texts += (list(frame["src"]) if i == 0 else []) + list(frame["tgt"])
    return texts


WORDS = ("the council met on tuesday residents gathered near station report was published "
         "this week officials spoke to press city river bridge market school").split()


def make_ntrex_tree(root: str | Path, n_docs: int = 12, langs: Iterable[str] = ("de", "ka"),
                    seed: int = 0) -> Path:
    """A small NTREX-128 tree (source, references, DOCUMENT_IDS.tsv) at `root`.

    Documents have 3-9 sentences; a reference is its source with every word reversed and a
    language mark, so every pair is learnable and line-aligned like the real files."""
    import random

    from peft_utils.data.ntrex import file_of

    rng = random.Random(seed)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    docs, source = [], []
    for d in range(n_docs):
        for _ in range(rng.randint(3, 9)):
            docs.append(f"news.{1000 + d}")
            source.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 10))) + " .")
    file_of(root, "en").write_text("\n".join(source) + "\n", encoding="utf-8")
    (root / "DOCUMENT_IDS.tsv").write_text("\n".join(docs) + "\n", encoding="utf-8")
    for iso in langs:
        refs = [" ".join(w[::-1] for w in s.split()) + f" {iso}" for s in source]
        file_of(root, iso).write_text("\n".join(refs) + "\n", encoding="utf-8")
    return root
