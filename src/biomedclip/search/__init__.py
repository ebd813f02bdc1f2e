"""Using a model on a collection: embed at scale (embed.py, store.py, items.py), FAISS index (index.py),
text/image search (query.py) and zero-shot classification of files (classify.py).

Modules import torch/faiss lazily where they can, so the CLI's ``--help`` stays fast.
"""

IMAGE_CHUNK_SIZE = 2048
TEXT_CHUNK_SIZE = 8192
"""Rows per stored embeddings chunk (the unit a killed run resumes from); texts are ~100× cheaper per
row than images. Defined here, without imports, so the CLI's option defaults are these very values."""
