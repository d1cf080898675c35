"""What belongs to neither study: run configuration (`config`), run folders and records
(`runs`), devices and precision (`devices`), the Hugging Face wiring (`modeling`), checkpoints
(`checkpoints`) and the training loop (`trainer`), reruns of a record (`rerun`), notebook
parameters (`notebook`), report outputs (`outputs`) and the interface a study plugs in
through (`study`)."""
