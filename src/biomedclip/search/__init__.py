"""Using a model on a collection: embed at scale (embed.py, store.py, items.py), FAISS index (index.py),
text/image search (query.py) and zero-shot classification of files (classify.py).

Modules import torch/faiss lazily where they can, so the CLI's ``--help`` stays fast.
"""
