"""Figures of the offline tools: matplotlib without a display, written as small PNGs.

Every picture the tools draw (the demo report's panels, costmap and latency plots, the benchmark's plot,
the fine-tune before/after picture) goes through ``save``: a 256-colour palette PNG is 3-5x smaller than
matplotlib's RGBA output and shows plots, colour maps and the synthetic camera images without visible loss,
so the pictures can be committed under doc/ and attached to reports as they come.
"""

from __future__ import annotations

import io
from pathlib import Path

__all__ = ['pyplot', 'save']


def pyplot():
    """matplotlib's pyplot on the Agg backend (no display needed).

    Raises:
        ImportError: matplotlib is not installed (it comes with the tools' extra, ``pip install .[tools]``).
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def save(fig, path: str | Path, dpi: float, **savefig_kw) -> Path:
    """Write ``fig`` as a palette PNG (median-cut to 256 colours, dithered only where a colour falls between
    two of the palette) and close it; returns the path. ``savefig_kw`` go to ``Figure.savefig``."""
    from matplotlib import pyplot as plt
    from PIL import Image

    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=dpi, **savefig_kw)
    plt.close(fig)
    buffer.seek(0)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(buffer) as image:
        median_cut = getattr(Image, 'Quantize', Image).MEDIANCUT  # Pillow < 9.1 (Ubuntu 22.04): no Quantize
        image.convert('RGB').quantize(256, method=median_cut).save(path, optimize=True)
    return path
