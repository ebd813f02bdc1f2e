"""biomedclip: an open, end-to-end implementation of the BiomedCLIP system.

Stages (one sub-package each): ``data`` (PMC articles → figure/caption WebDataset shards),
``models``, ``train``, ``evaluate``, ``search``, ``serve``.
"""

import os

# Nothing may be fetched from a model hub unless the user opts in (BIOMEDCLIP_ALLOW_DOWNLOAD=1).
if os.environ.get("BIOMEDCLIP_ALLOW_DOWNLOAD") != "1":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"
