"""The one place that runs a model: device, precision, encoding, prompt ensembles, temperature.

Every stage that computes embeddings — evaluation, embedding, search, classification, the server,
the demo — goes through :class:`ModelRunner`, so a rule about *how* a model runs is written once:

* **Device** (:func:`resolve_device`): ``auto`` = the first CUDA GPU when there is one, else the
  CPU; ``cpu``, ``cuda``, ``cuda:N`` and ``mps`` ask for one explicitly. A device that is not
  there is a :class:`DeviceUnavailableError` raised *before* a model is loaded (only torch is
  imported to check), so a typo costs a second, not a model load.
* **Precision** (:func:`resolve_precision`): weights stay fp32 and the forward pass runs under
  autocast. ``auto`` means bf16 on GPUs that support it, else fp16 (CUDA); bf16 on CPUs with
  native bf16 instructions (AVX512-BF16 or AMX, ~2× faster there), else fp32; fp16 on Apple
  ``mps``. ``fp32``, ``bf16`` and ``fp16`` force one.
* **Temperature** (:attr:`ModelRunner.temperature`): open_clip's convention — the softmax scale is
  ``exp(logit_scale)`` of the model, which open_clip's trainer clamps to at most 100 after every
  step; we apply the same cap, so a checkpoint from elsewhere cannot give sharper probabilities
  than open_clip would. Zero-shot evaluation, ``classify`` and the server all use this value.
* **Prompt ensembles** (:meth:`ModelRunner.class_embeddings`): a class is the re-normalised mean
  of its normalised prompt embeddings (CLIP's recipe, used by the BiomedCLIP paper).

Training does not run through here (open_clip_train owns the loop), but it takes its device and
precision from the same rules: :func:`train_precision` maps a runtime precision to open_clip's
``--precision`` names.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from biomedclip.errors import BiomedclipError

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

    from biomedclip.models.factory import LoadedModel

DEVICE_HELP = "auto (CUDA if present, else CPU), cpu, cuda, cuda:N or mps."
PRECISION_HELP = ("auto (CUDA: bf16, else fp16; CPU: bf16 where the CPU has native bf16, else fp32), "
                  "fp32, bf16 or fp16 (autocast; weights stay fp32).")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "bf16", "fp16")
MAX_TEMPERATURE = 100.0
"""open_clip_train clamps ``logit_scale`` to ``[0, ln 100]``; the same cap applies here."""

IMAGE_BATCH = {"cpu": 64, "cuda": 256, "mps": 64}
TEXT_BATCH = {"cpu": 256, "cuda": 1024, "mps": 256}
"""Default batch sizes: a GPU hides its latency only with larger batches; a CPU gains nothing."""

TRAIN_PRECISION = {"fp32": "fp32", "bf16": "amp_bf16", "fp16": "amp"}
OPEN_CLIP_PRECISIONS: tuple[str, ...] = ("fp32", "amp", "amp_bf16", "amp_bfloat16", "bf16", "fp16",
                                          "pure_bf16", "pure_fp16")


class DeviceUnavailableError(BiomedclipError):
    """The device asked for does not exist on this machine (or is not a device name)."""


class PrecisionError(BiomedclipError):
    """A precision name that is not one of :data:`PRECISIONS`."""


# -- device and precision ---------------------------------------------------------------------------

def _absent_without_torch(name: str) -> str | None:
    """Why an explicitly asked-for device cannot exist here, decided without importing torch.

    Importing torch takes seconds; a CUDA GPU on Linux always comes with the driver's
    ``/dev/nvidia*`` nodes, and MPS only exists on macOS, so their absence settles it at once.
    """
    import glob
    import sys

    if name.startswith("cuda") and sys.platform.startswith("linux") and not glob.glob("/dev/nvidia[0-9]*"):
        return "no NVIDIA GPU on this machine (no /dev/nvidia* device)"
    if name == "mps" and sys.platform != "darwin":
        return "Apple's Metal (MPS) backend exists only on macOS"
    return None


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device for ``auto|cpu|cuda|cuda:N|mps``; a clear error when it is not here."""
    name = str(spec or "auto").strip().lower()
    why = _absent_without_torch(name)
    if why is not None:
        raise DeviceUnavailableError(f"--device {spec}: {why}; use --device cpu or --device auto")
    import torch

    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise DeviceUnavailableError("--device mps: Apple's Metal (MPS) backend is not available here; "
                                         "use --device cpu or auto")
        return torch.device("mps")
    if name == "cuda" or name.startswith("cuda:"):
        index_text = name.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise DeviceUnavailableError(f"--device {spec}: expected cuda or cuda:N with N a GPU number")
        if not torch.cuda.is_available():
            why = ("this torch build has no CUDA support" if torch.version.cuda is None
                   else "no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
            raise DeviceUnavailableError(f"--device {spec}: {why}; use --device cpu or --device auto")
        count = torch.cuda.device_count()
        if int(index_text) >= count:
            raise DeviceUnavailableError(f"--device {spec}: this machine has {count} CUDA GPU(s), "
                                         f"cuda:0 … cuda:{count - 1}")
        return torch.device(f"cuda:{int(index_text)}")
    raise DeviceUnavailableError(f"--device {spec!r} is not a device name: {DEVICE_HELP}")


def cpu_has_native_bf16() -> bool:
    """Whether this CPU executes bf16 natively (AVX512-BF16 or AMX): only then is bf16 faster than fp32."""
    import torch

    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(cpu, name, lambda: False)() for name in checks)


def bf16_is_fast(device: torch.device) -> bool:
    """Whether bf16 autocast is the fast choice on ``device``."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    if device.type == "cpu":
        return cpu_has_native_bf16()
    return False


def resolve_precision(device: torch.device, precision: str | None = "auto") -> str:
    """``fp32``, ``bf16`` or ``fp16`` for ``device`` (see the module docstring for ``auto``)."""
    name = (precision or "auto").strip().lower()
    if name not in PRECISIONS:
        raise PrecisionError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if bf16_is_fast(device) else "fp16"
    if device.type == "mps":
        return "fp16"
    return "bf16" if bf16_is_fast(device) else "fp32"


def train_precision(device: torch.device, precision: str | None = "auto") -> str:
    """open_clip_train's ``--precision`` for a run on ``device``: ``amp_bf16``, ``amp`` or ``fp32``.

    Our own names (``auto``/``fp32``/``bf16``/``fp16``) follow :func:`resolve_precision`; open_clip's
    names (``amp``, ``amp_bf16``, ``pure_bf16``, …) pass through for users who know them.
    """
    name = (precision or "auto").strip().lower()
    if name in PRECISIONS:
        return TRAIN_PRECISION[resolve_precision(device, name)]
    if name in OPEN_CLIP_PRECISIONS:
        return name
    raise PrecisionError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)} "
                         f"(or open_clip's {', '.join(OPEN_CLIP_PRECISIONS[1:])})")


@dataclass(frozen=True)
class Runtime:
    """Where and how a model runs: a device and an autocast precision (``fp32`` = no autocast)."""

    device: torch.device
    precision: str

    @classmethod
    def resolve(cls, device: str | torch.device | None = "auto", precision: str | None = "auto") -> Runtime:
        """Check the device and precision names and resolve ``auto`` (fast: no model involved)."""
        resolved = resolve_device(device)
        return cls(resolved, resolve_precision(resolved, precision))

    def autocast(self) -> AbstractContextManager[Any]:
        """The autocast region for this runtime (a no-op context for fp32)."""
        import torch

        if self.precision == "fp32":
            return nullcontext()
        dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.autocast(self.device.type, dtype=dtype)

    @property
    def pin_memory(self) -> bool:
        """Pinned host memory speeds up host → GPU copies; useless (and costly) on CPU."""
        return self.device.type == "cuda"

    def batch_size(self, kind: str) -> int:
        """Default batch size for ``kind`` = ``image`` or ``text`` on this device."""
        table = IMAGE_BATCH if kind == "image" else TEXT_BATCH
        return table.get(self.device.type, table["cpu"])

    @property
    def tag(self) -> str:
        """A short name for caches and reports, e.g. ``cpu-bf16``, ``cuda-fp16``."""
        return f"{self.device.type}-{self.precision}"

    def describe(self) -> dict[str, str]:
        """What a report or ``/health`` shows about the runtime."""
        return {"device": str(self.device), "precision": self.precision}


# -- the runner ---------------------------------------------------------------------------------------

def _batches(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class ModelRunner:
    """A loaded model placed on a :class:`Runtime`: the only object in the project that runs one.

    Everything returns float32 numpy arrays (or CPU tensors, for :meth:`encode_pixels`) with
    unit-norm rows, so callers do plain numpy and never touch devices or autocast.
    """

    def __init__(self, loaded: LoadedModel, runtime: Runtime) -> None:
        self.loaded = loaded
        self.runtime = runtime
        loaded.model.to(runtime.device).eval()

    # what callers need to feed the model
    @property
    def model(self) -> torch.nn.Module:
        return self.loaded.model

    @property
    def _clip(self) -> Any:
        """The open_clip ``CLIP``/``CustomTextCLIP`` module (typed loosely: its encoders are not in torch's stubs)."""
        return self.loaded.model

    @property
    def name(self) -> str:
        return self.loaded.name

    @property
    def preprocess(self) -> Callable[[Any], torch.Tensor]:
        """The evaluation transform (resize, centre crop, normalise) of the model."""
        return self.loaded.preprocess_val

    @property
    def tokenizer(self) -> Any:
        return self.loaded.tokenizer

    @property
    def model_cfg(self) -> dict[str, Any]:
        return self.loaded.model_cfg

    @property
    def preprocess_cfg(self) -> dict[str, Any]:
        return self.loaded.preprocess_cfg

    @property
    def context_length(self) -> int:
        return self.loaded.context_length

    @property
    def embed_dim(self) -> int:
        return int(self.loaded.model_cfg.get("embed_dim", 0))

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def precision(self) -> str:
        return self.runtime.precision

    @property
    def temperature(self) -> float:
        """Softmax scale of cosine similarities: ``exp(logit_scale)``, capped at 100 (open_clip)."""
        scale = getattr(self.model, "logit_scale", None)
        if scale is None:
            return MAX_TEMPERATURE
        value = float(scale.detach().float().exp().reshape(-1)[0])
        return min(MAX_TEMPERATURE, value) if math.isfinite(value) else MAX_TEMPERATURE

    # encoding
    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit-norm float32 CPU features of a preprocessed image batch ``[B, 3, H, W]``.

        The caller holds the inference-mode/autocast region (:meth:`session`) so a long loop
        enters it once; :meth:`encode_images` does that for small jobs.
        """
        import torch

        feats = self._clip.encode_image(pixels.to(self.device, non_blocking=True)).float()
        return torch.nn.functional.normalize(feats, dim=-1).cpu()

    def encode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        """Unit-norm float32 CPU features of a token batch (inside :meth:`session`)."""
        import torch

        feats = self._clip.encode_text(tokens.to(self.device, non_blocking=True)).float()
        return torch.nn.functional.normalize(feats, dim=-1).cpu()

    def session(self) -> AbstractContextManager[Any]:
        """Inference mode + this runtime's autocast, entered once around a whole loop."""
        from contextlib import ExitStack

        import torch

        stack = ExitStack()
        stack.enter_context(torch.inference_mode())
        stack.enter_context(self.runtime.autocast())
        return stack

    def encode_images(self, images: Iterable[Image.Image], batch_size: int | None = None) -> np.ndarray:
        """``[N, D]`` unit-norm float32 embeddings of RGB images, with the model's preprocessing."""
        import torch

        size = batch_size or self.runtime.batch_size("image")
        chunks = []
        with self.session():
            for batch in _batches(list(images), size):
                chunks.append(self.encode_pixels(torch.stack([self.preprocess(im) for im in batch])))
        return self._stack(chunks)

    def encode_texts(self, texts: Sequence[str], batch_size: int | None = None) -> np.ndarray:
        """``[N, D]`` unit-norm float32 embeddings of texts, tokenised with the model's tokenizer."""
        size = batch_size or self.runtime.batch_size("text")
        chunks = []
        with self.session():
            for batch in _batches(list(texts), size):
                chunks.append(self.encode_tokens(self.tokenizer(list(batch))))
        return self._stack(chunks)

    def _stack(self, chunks: list[torch.Tensor]) -> np.ndarray:
        import numpy as np
        import torch

        if not chunks:
            return np.zeros((0, self.embed_dim), np.float32)
        return torch.cat(chunks).numpy().astype(np.float32, copy=False)

    # zero-shot
    def class_embeddings(self, classnames: Sequence[str], templates: Sequence[str]) -> np.ndarray:
        """``[C, D]`` unit-norm class embeddings: the mean of each class's normalised prompts."""
        import numpy as np

        if not classnames or not templates:
            raise ValueError("need at least one class name and one template")
        prompts = [t.format(c) for c in classnames for t in templates]
        feats = self.encode_texts(prompts).reshape(len(classnames), len(templates), -1).mean(axis=1)
        return feats / np.linalg.norm(feats, axis=1, keepdims=True)

    def probabilities(self, image_features: np.ndarray, class_embeddings: np.ndarray) -> np.ndarray:
        """``[N, C]`` softmax over classes of :attr:`temperature` × cosine similarity."""
        return softmax_probabilities(image_features, class_embeddings, self.temperature)

    # identity
    def weights_sha256(self) -> str:
        """sha256 over the weights, preprocessing config and tokenizer vocabulary.

        Identifies *what* computed a vector, whatever path it was loaded from: embeddings and
        indexes record it, evaluation caches key on it. Memoised, and recomputed when a weight
        changed in place (torch's per-tensor version counters), e.g. after fine-tuning.
        """
        import torch

        version = sum(t._version for t in (*self.model.parameters(), *self.model.buffers()))
        memo = self.loaded.__dict__.get("_weights_sha256")  # on the loaded model: runners come and go
        if memo is not None and memo[0] == version:
            return str(memo[1])
        h = hashlib.sha256()
        for key, tensor in sorted(self.model.state_dict().items()):
            t = tensor.detach().to("cpu").contiguous()
            h.update(f"{key}|{t.dtype}|{tuple(t.shape)}\n".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        h.update(json.dumps(self.preprocess_cfg, sort_keys=True, default=str).encode())
        inner = getattr(self.tokenizer, "tokenizer", None)
        vocab = inner.get_vocab() if inner is not None and hasattr(inner, "get_vocab") else {}
        h.update(json.dumps(sorted(vocab.items())).encode())
        h.update(str(self.context_length).encode())
        digest = h.hexdigest()
        self.loaded.__dict__["_weights_sha256"] = (version, digest)
        return digest

    def identity(self) -> str:
        """A stable name for the model's source (bundle paths made absolute)."""
        name = str(self.name)
        if name.startswith("local-dir:"):
            return "local-dir:" + str(Path(name[len("local-dir:"):]).resolve())
        return name

    def describe(self) -> dict[str, Any]:
        """Model name, embedding size, temperature and runtime, for reports and ``/health``."""
        return {"model": self.identity(), "embed_dim": self.embed_dim, "temperature": round(self.temperature, 4),
                **self.runtime.describe()}


ModelLike = Union[ModelRunner, "LoadedModel", str, Path]  # noqa: UP007 - a forward reference needs Union
"""What library entry points accept as a model: a runner, a bare loaded model (runs where its weights
are), or anything :func:`~biomedclip.models.factory.load_model` takes (loaded with the ``auto`` runtime)."""


def softmax_probabilities(image_features: np.ndarray, class_embeddings: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax over classes of ``temperature`` × cosine similarity (``[N, C]``), numerically stable."""
    import numpy as np

    logits = temperature * image_features @ class_embeddings.T
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    return probs / probs.sum(axis=1, keepdims=True)


def load_runner(name_or_path: str | Path, *, device: str | torch.device | None = "auto",
                precision: str | None = "auto", **load_options: Any) -> ModelRunner:
    """Check the runtime, then load a model (anything :func:`~biomedclip.models.factory.load_model`
    takes) onto it. The device check comes first, so a missing GPU fails before any weights load."""
    runtime = Runtime.resolve(device, precision)
    from biomedclip.models.factory import load_model

    return ModelRunner(load_model(name_or_path, device=runtime.device, **load_options), runtime)


def as_runner(model: ModelLike, *, device: str | torch.device | None = None,
              precision: str | None = None) -> ModelRunner:
    """A :class:`ModelRunner` for what a library caller passes.

    A runner is returned as is (unless another device/precision is asked for); a bare
    ``LoadedModel`` keeps the device its weights are on; a name or path is loaded with
    :func:`load_runner` (``device``/``precision`` default ``auto``).
    """
    if isinstance(model, ModelRunner):
        if device is None and precision is None:
            return model
        runtime = Runtime.resolve(device or model.device, precision or model.precision)
        return model if runtime == model.runtime else ModelRunner(model.loaded, runtime)
    if isinstance(model, str | Path):
        return load_runner(model, device=device or "auto", precision=precision or "auto")
    if device is None:
        params = next(iter(model.model.parameters()), None)
        device = params.device if params is not None else "cpu"
    return ModelRunner(model, Runtime.resolve(device, precision or "auto"))
