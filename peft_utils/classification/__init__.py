"""The classification study (Razuvayevskaya et al., 2023/2024): PEFT vs full fine-tuning on
multilingual text classification (SemEval-2023 Task 3, SIB-200, BRIGHTER).

Modules: `config` (RunConfig), `models` (builders, parameter report), `head`, `run_data` (a
run's rows and coverage), `imbalance` (class_weights), `probe` (frozen-feature baseline),
`inference`, `token_cache`, `training` (train_and_evaluate), `metrics`, `notebook` (what
train.ipynb calls), `analysis/` (tables, bootstrap, figures, report), `testing` (tiny
models), `study` (the study as the grid sees it). The offline default model is prepared in
`peft_utils.modelprep`.
"""
