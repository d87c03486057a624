"""rc_offline.figures: the tools' pictures are palette PNGs that keep what was drawn."""

import io

import numpy as np
import pytest

pytest.importorskip('matplotlib')
pytest.importorskip('PIL')

from PIL import Image

from rc_offline import figures


def test_a_figure_is_written_as_a_smaller_palette_png_that_keeps_its_colours(tmp_path):
    plt = figures.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(6, 2))
    fig.patch.set_facecolor((1.0, 0.0, 0.0))  # pure red around two colour-mapped images
    ramp = np.linspace(0.0, 1.0, 120 * 40).reshape(40, 120)
    axes[0].imshow(ramp, cmap='turbo')
    axes[1].imshow(np.random.default_rng(0).random((40, 120)), cmap='magma')
    for ax in axes:
        ax.set_axis_off()
    drawn = io.BytesIO()
    fig.savefig(drawn, format='png', dpi=80)
    path = figures.save(fig, tmp_path / 'sub' / 'figure.png', dpi=80)
    assert path == tmp_path / 'sub' / 'figure.png' and not plt.get_fignums(), 'written and closed'
    drawn.seek(0)
    with Image.open(drawn) as image:
        want = np.asarray(image.convert('RGB')).astype(int)
    with Image.open(path) as image:
        assert image.mode == 'P' and image.size == (480, 160)
        got = np.asarray(image.convert('RGB')).astype(int)
    assert tuple(got[0, 0]) == (255, 0, 0), 'a flat colour comes back exactly'
    error = np.abs(got - want)
    assert error.mean() < 2.0 and np.percentile(error, 99) < 16, (error.mean(), np.percentile(error, 99))
    assert path.stat().st_size < drawn.getbuffer().nbytes / 2, (path.stat().st_size, drawn.getbuffer().nbytes)
