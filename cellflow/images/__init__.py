"""Flow matching for images: a plain-torch UNet field, class conditioning with
classifier-free guidance, Euler or dopri5 sampling, and Fréchet-distance scoring.

- :class:`ImageFlow`: the model (``train``, ``sample``, ``save``, ``load``);
- :func:`load_images`, :func:`read_cifar10`, :func:`read_image_folder`: data in [-1, 1];
- :func:`frechet_distance`, :func:`train_digits_classifier`, :func:`inception_fid`: scoring;
- :func:`save_image_grid`: PNG grids.
"""

from ._data import CIFAR10_CLASSES, load_images, read_cifar10, read_image_folder
from ._metrics import DigitsClassifier, frechet_distance, inception_fid, train_digits_classifier
from ._model import PRESETS, ImageFlow, save_image_grid

__all__ = [
    "ImageFlow",
    "PRESETS",
    "save_image_grid",
    "load_images",
    "read_cifar10",
    "read_image_folder",
    "CIFAR10_CLASSES",
    "frechet_distance",
    "DigitsClassifier",
    "train_digits_classifier",
    "inception_fid",
]
