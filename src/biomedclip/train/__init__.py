"""Pretraining: the paper's recipe on our shards, run by open_clip_train (in-process or torchrun)."""
