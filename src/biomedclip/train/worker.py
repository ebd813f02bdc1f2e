"""Entry point of each torchrun process: ``python -m biomedclip.train.worker ARGS.json``.

torchrun parses its own options out of the whole command line before handing the rest to the
script, and open_clip_train's ``--logs`` is an ambiguous prefix of torchrun's ``--logs-specs``.
Passing the trainer's arguments in a JSON file sidesteps that (and any quoting trouble).
"""

from __future__ import annotations

import json
import sys


def allow_cpu_ddp() -> None:
    """Let open_clip_train's DDP wrapping work on CPU (gloo).

    open_clip_train always passes ``device_ids=[device]`` to DistributedDataParallel, which torch
    refuses for CPU modules ("device_ids … only work with … GPU modules"). For CPU devices the
    right call is without device_ids; this subclass drops them and changes nothing else.
    """
    import torch

    base = torch.nn.parallel.DistributedDataParallel
    if getattr(base, "_biomedclip_cpu_ok", False):
        return

    class CpuFriendlyDDP(base):  # type: ignore[misc, valid-type]
        _biomedclip_cpu_ok = True

        def __init__(self, module, device_ids=None, *args, **kwargs):  # noqa: ANN001
            if device_ids and all(torch.device(d).type == "cpu" for d in device_ids):
                device_ids = None
            super().__init__(module, device_ids, *args, **kwargs)

    torch.nn.parallel.DistributedDataParallel = CpuFriendlyDDP  # type: ignore[misc]


def main() -> None:
    from open_clip_train.main import main as open_clip_main

    allow_cpu_ddp()
    with open(sys.argv[1]) as f:
        argv = json.load(f)
    status = open_clip_main(argv)
    sys.exit(0 if status in (None, 0) else 1)


if __name__ == "__main__":
    main()
