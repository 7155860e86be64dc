"""Write scikit-image's public-domain / CC0 photos to PNG folders for the demo codec.

    python scripts/skimage_photos.py OUT_DIR

writes OUT_DIR/train/*.png (the demo codec's training photos), OUT_DIR/heldout/*.png (never
trained on: its `codec eval` figures) and OUT_DIR/LICENSES.txt. Only photos whose scikit-image
docstring states CC0 or public domain are used; the texture photos (brick, grass, gravel) are
left out because the demo *dataset* is cut from them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

# name -> licence as scikit-image's docstring states it
TRAIN = {
    "astronaut": "NASA, public domain",
    "rocket": "SpaceX, released into the public domain",
    "hubble_deep_field": "NASA, public domain",
    "retina": "Mikael Häggström, CC0 1.0",
    "camera": "Lav Varshney, CC0",
    "clock": "Stefan van der Walt, public domain",
    "cell": "Paul Müller et al., CC0",
}
HELDOUT = {
    "chelsea": "Stefan van der Walt, CC0",
    "coffee": "Rachel Michetti, CC0",
}


def _rgb(name: str) -> np.ndarray:
    import skimage.data

    a = getattr(skimage.data, name)()
    return np.stack([a] * 3, axis=-1) if a.ndim == 2 else a[..., :3]


def main(out: str) -> None:
    root = Path(out)
    lines = []
    for part, names in (("train", TRAIN), ("heldout", HELDOUT)):
        (root / part).mkdir(parents=True, exist_ok=True)
        for name, licence in names.items():
            Image.fromarray(_rgb(name)).save(root / part / f"{name}.png")
            lines.append(f"{part}/{name}.png\tskimage.data.{name}()\t{licence}")
    (root / "LICENSES.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
