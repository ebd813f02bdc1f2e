"""Reading images for the model: ordinary files plus DICOM and NIfTI, all returned as RGB PIL images."""

from biomedclip.io.medical import MedicalImageError, is_medical, load_image, load_image_bytes

__all__ = ["MedicalImageError", "is_medical", "load_image", "load_image_bytes"]
