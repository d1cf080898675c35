"""The machine-translation study (Üstün & Cooper Stickland, EMNLP 2022): PEFT vs full
fine-tuning for MT at parameter budgets, on NTREX-128 split by document, and translation of
SemEval training articles for the classification `en+translations` scenario.

Modules: `config` (MTConfig), `langs`, `data` (NTREX, document-level splits), `models`
(seq2seq builders, parameter budgets), `tokenize` (language schemes, generation),
`training` (train/evaluate on the core trainer, scored with sacrebleu), `translate` (the
translate command), `study` (the study as the grid sees it), `notebook` (what mt_train.ipynb
calls), `analysis` (tables), `figures`, `cli`, `testing` (tiny models and data).
"""
