"""What belongs to neither study: run configuration (`config`), run folders and records
(`runs`), devices and precision (`devices`), the Hugging Face wiring (`modeling`), checkpoints
(`checkpoints`), the training loop (`trainer`), one run end to end with a study's steps
plugged in (`pipeline`), reruns of a record (`rerun`), notebook parameters (`notebook`),
reports (`report`: results read, tables and figures kept and written; `outputs`: the
files and cell formats) and the interface a study plugs in through (`study`)."""
