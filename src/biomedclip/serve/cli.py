"""``biomedclip serve``: the HTTP API and web page on uvicorn, one process, the model loaded once."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from biomedclip.models.names import check_model_option
from biomedclip.options import DeviceOpt, Fp32Opt, PrecisionOpt, runtime_from_options
from biomedclip.ui import console


def serve_command(
    model: Annotated[str, typer.Option("--model", "-m", help="Model: built-in name, local-dir:BUNDLE, hf-hub:ORG/NAME "
                                                             "or a checkpoint. Loaded once at start-up.",
                                       callback=check_model_option)],
    index: Annotated[Path | None, typer.Option(help="Index folder from `biomedclip index` to serve /search "
                                                    "(built with the same model).")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0 = every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    max_upload_mb: Annotated[float, typer.Option(min=0.01, help="Largest accepted upload, in MiB.")] = 20.0,
    max_pixels: Annotated[int, typer.Option(min=1, help="Largest accepted 2-D image (width × height); "
                                                        "guards against decompression bombs.")] = 40_000_000,
    max_voxels: Annotated[int, typer.Option(min=1, help="Largest accepted DICOM/NIfTI volume.")] = 2**28,
    device: DeviceOpt = "auto",
    precision: PrecisionOpt = "auto",
    fp32: Fp32Opt = False,
    log_level: Annotated[str, typer.Option(help="uvicorn log level: warning, info, debug …")] = "info",
) -> None:
    """Serve /health, /classify, /search, /embed (docs at /docs) and the web page at /."""
    import uvicorn

    from biomedclip.serve.app import create_app
    from biomedclip.serve.uploads import UploadLimits

    runtime = runtime_from_options(device, precision, fp32)
    limits = UploadLimits(max_bytes=int(max_upload_mb * 2**20), max_pixels=max_pixels, max_voxels=max_voxels)
    with console.status(f"loading {model}" + (f" and {index}" if index else "")):
        app = create_app(model, index, limits=limits, device=str(runtime.device), precision=runtime.precision)
    service = app.state.service
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0") else host
    console.print(f"[green]serving[/green] {service.name} "
                  f"({service.embed_dim}-d, {service.device}, {service.precision})"
                  + (f" with {service.searcher.index.count:,} indexed items" if service.searcher else "")
                  + f"\npage: http://{shown}:{port}/   API docs: http://{shown}:{port}/docs")
    uvicorn.run(app, host=host, port=port, log_level=log_level, workers=1)
