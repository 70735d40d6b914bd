"""Regenerate the sample images in data/samples/ (run: python data/make_samples.py).

Everything comes from scikit-learn's bundled data, so no download is needed:

* ``digit_<d>.png``: the most typical image of digit d in the digits set (the one nearest
  the mean of its class; 8x8, 17 grey levels), scaled up smoothly to 112x112 and shown as
  the set stores it, light ink on dark.
* ``digit_<d>_paper.png``: the same kind of digit, inverted: dark ink on white paper, as
  a drawing or a photo of one would be. The Classify page inverts it back automatically.
* ``china.jpg`` and ``flower.jpg``: the two photos of ``load_sample_images``, scaled down
  to 320 px wide so each file stays small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits, load_sample_images

OUT = Path(__file__).resolve().parent / "samples"
LIGHT_ON_DARK = (0, 3, 7)
DARK_ON_LIGHT = (2, 5)
DIGIT_SIDE = 112
PHOTO_WIDTH = 320


def typical_index(images: np.ndarray, target: np.ndarray, digit: int) -> int:
    """Index of the image of ``digit`` nearest (in pixels) to the mean of its class."""
    idx = np.flatnonzero(target == digit)
    flat = images[idx].reshape(len(idx), -1)
    return int(idx[np.argmin(((flat - flat.mean(axis=0)) ** 2).sum(axis=1))])


def digit_image(images: np.ndarray, target: np.ndarray, digit: int, paper: bool) -> Image.Image:
    """The typical ``digit`` of the set, upscaled; ``paper`` inverts it to dark-on-light."""
    idx = typical_index(images, target, digit)
    arr = (images[idx] / 16.0 * 255.0).round().astype(np.uint8)
    img = Image.fromarray(arr, "L").resize((DIGIT_SIDE, DIGIT_SIDE), Image.Resampling.BICUBIC)
    return Image.eval(img, lambda v: 255 - v) if paper else img


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    for d in LIGHT_ON_DARK:
        digit_image(digits.images, digits.target, d, paper=False).save(
            OUT / f"digit_{d}.png", optimize=True)
    for d in DARK_ON_LIGHT:
        digit_image(digits.images, digits.target, d, paper=True).save(
            OUT / f"digit_{d}_paper.png", optimize=True)
    photos = load_sample_images()
    for name, arr in zip(photos.filenames, photos.images, strict=True):
        img = Image.fromarray(arr)
        height = round(img.height * PHOTO_WIDTH / img.width)
        img.resize((PHOTO_WIDTH, height), Image.Resampling.LANCZOS).save(
            OUT / Path(name).name, quality=85, optimize=True)
    for path in sorted(OUT.iterdir()):
        print(f"{path.name:22s} {path.stat().st_size / 1024:6.1f} KB")


if __name__ == "__main__":
    main()
