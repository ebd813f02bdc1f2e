"""Reading images for the model: ordinary files plus DICOM and NIfTI, all returned as RGB PIL images.

:mod:`~biomedclip.io.medical` reads files (format sniffing, DICOM/NIfTI, :class:`ReadOptions`);
:mod:`~biomedclip.io.pixels` owns the one pixels → RGB conversion the data build uses too.
"""

from biomedclip.io.medical import MedicalImageError, ReadOptions, is_medical, load_image, load_image_bytes, sniff
from biomedclip.io.pixels import to_rgb

__all__ = ["MedicalImageError", "ReadOptions", "is_medical", "load_image", "load_image_bytes", "sniff", "to_rgb"]
