"""Evaluation: zero-shot classification, cross-modal retrieval (and, later, probes and VQA)."""
