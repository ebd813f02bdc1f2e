"""Synthetic PMC Open Access corpus: JATS articles whose figure captions describe their images.

Why it exists: the demo and the training/evaluation tests need a corpus that (1) looks like the real
PMC OA inputs to every data-pipeline stage — nested folders of ``.nxml`` + media, legacy ``.tar.gz``
packages, three XML wrappers, extension-less graphic hrefs, mixed image formats (palette PNG,
16-bit TIFF, CMYK JPEG, GIF thumbnails) and a few broken items — and (2) carries a signal a tiny
CLIP can learn in minutes on CPU: every modality has a look that survives a 96 px resize, and the
captions name the modality (with synonyms) and the finding attributes the pixels actually show.
It is a fixture generator, not part of the data build, hence its own package.

Outputs of :func:`synthesize` (``OUT`` = the output folder):

* ``folders/<group>/<PMCID>/<PMCID>.nxml`` + media files beside it,
* ``packages/<PMCID>.tar.gz`` (top folder ``<PMCID>/`` with ``<stem>.nxml``, ``<stem>.pdf``, media
  and ``.gif`` thumbnails beside full-size ``.jpg`` files),
* ``labels.jsonl`` — one row per ``<fig>``: ``key`` (:func:`records.make_key`), modality, finding
  attributes, ``compound``, ``broken`` and the plain caption (ground truth joined to shards by key),
* ``classes.json`` — class names and prompt templates for zero-shot evaluation,
* ``summary.json`` — the counts of :class:`SynthSummary`.

Positions (``left``/``right``, ``upper``/``lower``) always mean *as seen in the image* — no
radiological left/right swap — so one caption word maps to one image half in every modality.

Determinism: each article draws from its own RNG seeded with ``(seed, index)``; tar/gzip headers
use fixed mtimes, owners and member order; so one seed gives byte-identical files for any number
of workers (on the same numpy/Pillow/zlib builds).

Modules, in the order an article is made (each one job):

=============  =================================================================================
``vocab``      modalities, attribute classes, prompt templates, broken kinds (the label contract)
``sampling``   the RNG choice helpers every step uses
``specs``      what each panel/figure shows (attributes sampled before drawing)
``plan``       article metadata and figure planning (ids, labels, formats, file names, breakage)
``captions``   caption text for a figure spec
``draw``       drawing primitives and acquisition variation
``render``     one renderer per modality; single and compound figure layout
``encode``     float image → file bytes (JPEG/PNG/TIFF/GIF), deliberate breakage
``jats``       the JATS XML writer
``truth``      ``classes.json`` and the ``labels.jsonl`` rows
``corpus``     :func:`synthesize`: workers, the on-disk layout, deterministic ``.tar.gz``
=============  =================================================================================

Only the names below are the package's API. Underscored names are shared between these modules
and private to the package: they may change whenever the corpus does.
"""

from biomedclip.synth.corpus import SynthSummary, synthesize
from biomedclip.synth.truth import classes_spec
from biomedclip.synth.vocab import ATTRIBUTE_CLASSES, BROKEN_KINDS, MODALITIES, Modality

__all__ = [
    "ATTRIBUTE_CLASSES",
    "BROKEN_KINDS",
    "MODALITIES",
    "Modality",
    "SynthSummary",
    "classes_spec",
    "synthesize",
]
