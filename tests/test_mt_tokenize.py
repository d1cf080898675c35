"""Language schemes with the real tokenizer classes of the study's models (mBART-50, NLLB,
mT5), built from a SentencePiece model trained here: the right codes around source and target,
the target code forced as the first generated token, the T5 task prefix."""
from __future__ import annotations

import pytest

from peft_utils.mt.testing import tiny_seq2seq_config
from peft_utils.mt.tokenize import encode_pairs, scheme_for, translate_texts

TEXTS = ["the city council met on tuesday", "der stadtrat tagte am dienstag",
         "residents gathered near the station"]


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory):
    import sentencepiece as spm

    folder = tmp_path_factory.mktemp("spm")
    (folder / "text.txt").write_text("\n".join(TEXTS * 50))
    spm.SentencePieceTrainer.train(input=str(folder / "text.txt"), model_prefix=str(folder / "sp"),
                                   vocab_size=60, model_type="unigram", minloglevel=2,
                                   hard_vocab_limit=False)
    return str(folder / "sp.model")


@pytest.mark.parametrize("tokenizer_class, model_type, codes", [
    ("MBart50Tokenizer", "mbart", ("en_XX", "de_DE")),
    ("NllbTokenizer", "m2m_100", ("eng_Latn", "deu_Latn")),
])
def test_language_codes_frame_the_pair_and_lead_generation(spm_model, tokenizer_class,
                                                           model_type, codes):
    import torch
    import transformers
    from transformers import AutoModelForSeq2SeqLM

    tokenizer = getattr(transformers, tokenizer_class)(vocab_file=spm_model)
    scheme = scheme_for(tokenizer, model_type)
    (row,) = encode_pairs(tokenizer, scheme, ["the city council"], ["der stadtrat"], "en", "de",
                          16, 16)
    tokens = tokenizer.convert_ids_to_tokens(row["input_ids"])
    labels = tokenizer.convert_ids_to_tokens(row["labels"])
    assert tokens[0] == codes[0] and tokens[-1] == "</s>"
    assert labels[0] == codes[1] and labels[-1] == "</s>"

    torch.manual_seed(0)
    model = AutoModelForSeq2SeqLM.from_config(tiny_seq2seq_config(
        model_type, vocab_size=len(tokenizer), d_model=16, ffn=32, heads=2))
    batch = tokenizer(["the city council"], return_tensors="pt")
    out = model.generate(**batch, max_new_tokens=4, **scheme.generate_kwargs(tokenizer, "de"))
    assert tokenizer.convert_ids_to_tokens(out[0, 1:2].tolist()) == [codes[1]]
    assert len(translate_texts(model, tokenizer, scheme, TEXTS[:2], "en", "de",
                               max_new_tokens=4)) == 2


def test_a_language_the_model_lacks_is_refused():
    from peft_utils.mt.tokenize import Scheme

    with pytest.raises(ValueError, match=r"Greek \(el\) is not a language of this mbart50"):
        Scheme("mbart50").code("el")
    assert Scheme("nllb").code("el") == "ell_Grek"


def test_t5_names_the_pair_in_a_prefix(spm_model):
    from transformers import T5Tokenizer

    tokenizer = T5Tokenizer(vocab_file=spm_model, legacy=True)
    scheme = scheme_for(tokenizer, "mt5")
    assert scheme.name == "t5"
    assert scheme.sources(["Hello"], "en", "ka") == ["translate English to Georgian: Hello"]
    assert scheme.generate_kwargs(tokenizer, "ka") == {}


def test_mt5_trains_with_its_slow_tokenizer(spm_model, tmp_path):
    """mT5 end to end: no sdpa in this architecture, a SentencePiece-only tokenizer loaded
    without protobuf, the adapters library's prefix tuning and T5's cross-attention."""
    import shutil

    import torch
    from transformers import MT5ForConditionalGeneration, T5Tokenizer

    from peft_utils.mt.config import MTConfig
    from peft_utils.mt.testing import make_ntrex_tree
    from peft_utils.mt.training import train_and_evaluate

    folder = tmp_path / "tiny-mt5"
    tokenizer = T5Tokenizer(vocab_file=spm_model, legacy=True, extra_ids=0)
    tokenizer.save_pretrained(folder)
    shutil.copy(spm_model, folder / "spiece.model")
    torch.manual_seed(0)
    MT5ForConditionalGeneration(tiny_seq2seq_config(
        "mt5", vocab_size=len(tokenizer), d_model=32, ffn=64)).save_pretrained(folder)
    data = make_ntrex_tree(tmp_path / "ntrex", n_docs=10)
    for method, budget in (("prefix", 0.05), ("cross_attn", None)):
        result = train_and_evaluate(MTConfig(
            model=str(folder), data_root=str(data), method=method, budget=budget, max_steps=2,
            eval_steps=2, max_source_length=24, max_target_length=8, batch_size=8,
            warmup_steps=0, select_on="chrf", results_dir=str(tmp_path / "results"),
            device="cpu", save_checkpoint=False))
        assert result.record["status"] == "complete" and result.record["meta"]["scheme"] == "t5"
        if budget:
            assert result.record["budget"]["relative_error"] <= 0.1
