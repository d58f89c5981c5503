"""Figures of samples a person looks at, and PNG encoding: image grids for
images, per-class line plots for series, per-feature profiles for tables
(`sample_figure` picks by the inputs' rank)."""

import numpy as np
import tensorflow as tf
from PIL import Image, ImageDraw, ImageFont


def image_grid(images, rows, value_range=(0.0, 1.0)):
    """Tiles `images` `(N, H, W, C)` row-major into a uint8 `(rows*H, cols*W, C)` grid.

    Values are mapped from `value_range` to 0..255; `N` must be a multiple of `rows`.
    """
    images = np.asarray(images, dtype=np.float32)
    count, height, width, channels = images.shape
    if rows < 1 or count % rows:
        raise ValueError(f"Cannot tile {count} images into {rows} equal rows.")
    columns = count // rows
    low, high = value_range
    pixels = np.clip((images - low) / (high - low), 0.0, 1.0)
    pixels = np.round(pixels * 255).astype(np.uint8)
    grid = pixels.reshape(rows, columns, height, width, channels)
    return grid.transpose(0, 2, 1, 3, 4).reshape(rows * height, columns * width, channels)


def encode_png(grid):
    """PNG bytes of a uint8 `(H, W, C)` image."""
    return tf.io.encode_png(grid).numpy()


def label_rows(grid, names):
    """`grid` `(rows*H, W, C)` uint8 with each row's name written in a white strip on its left."""
    height, _, channels = grid.shape
    row_height = height // len(names)
    font = ImageFont.load_default(size=max(8, min(14, row_height - 4)))
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    width = 6 + max(int(measure.textlength(str(name), font=font)) for name in names)
    strip = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(strip)
    for row, name in enumerate(names):
        draw.text((3, row * row_height + row_height // 2), str(name), fill=0, font=font,
                  anchor="lm")
    strip = np.repeat(np.asarray(strip)[:, :, None], channels, axis=2)
    return np.concatenate([strip, grid], axis=1)


PANEL = (160, 96)  # (width, height) of one class's plot, in pixels
COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
           (23, 190, 207), (140, 86, 75), (227, 119, 194)]


def sample_figure(samples, rows, value_range=(0.0, 1.0), class_names=None, real=None):
    """A uint8 `(height, width, channels)` figure of `samples`, one row per class.

    Images `(N, H, W, C)`: the grid of `image_grid`, labelled. Series `(N, T, C)`:
    per class a panel per channel, the class's synthesized series in colour
    over real ones of that class (`real`, the same layout, in grey). Feature
    vectors `(N, F)`: per class a profile, each sample a line across its
    features, over the real ones. Series and table panels share one vertical
    scale per channel (per figure for tables), so rows compare.

    Args:
        samples: `N` inputs, `rows` classes of `N // rows` samples, class-major.
        real: None, or real inputs laid out like `samples`.
    """
    samples = np.nan_to_num(np.asarray(samples, np.float32))
    if samples.ndim == 4:
        grid = image_grid(samples, rows, value_range)
        return label_rows(grid, class_names) if class_names else grid
    if samples.ndim not in (2, 3):
        raise ValueError(f"sample_figure draws images, series (N, T, C) or feature vectors "
                         f"(N, F). Received: samples of shape {samples.shape}")
    # A table row (F,) is drawn as a one-channel series of F steps: a profile on one scale.
    series = samples if samples.ndim == 3 else samples[:, :, None]
    others = None if real is None else np.nan_to_num(np.asarray(real, np.float32))
    if others is not None and others.ndim == 2:
        others = others[:, :, None]
    channels = series.shape[2]
    both = series if others is None else np.concatenate([series, others])
    low, high = both.min(axis=(0, 1)), both.max(axis=(0, 1))  # per channel
    per_class = len(series) // rows
    figure = Image.new("RGB", (PANEL[0] * channels, PANEL[1] * rows), "white")
    draw = ImageDraw.Draw(figure)
    for row in range(rows):
        for channel in range(channels):
            box = (channel * PANEL[0], row * PANEL[1])
            draw.rectangle([box, (box[0] + PANEL[0] - 1, box[1] + PANEL[1] - 1)],
                           outline=(200, 200, 200))
            group = [(others, (170, 170, 170))] if others is not None else []
            for values, colour in group + [(series, COLOURS[row % len(COLOURS)])]:
                for line in values[row * per_class:(row + 1) * per_class, :, channel]:
                    draw.line(_points(line, box, low[channel], high[channel]), fill=colour)
    grid = np.asarray(figure)
    return label_rows(grid, class_names) if class_names else grid


def _points(line, box, low, high):
    """Pixel coordinates of a line's values inside a panel at `box`."""
    width, height = PANEL[0] - 8, PANEL[1] - 8
    x = box[0] + 4 + np.linspace(0, width, len(line)) if len(line) > 1 else np.array([box[0] + 4])
    y = box[1] + 4 + height * (1 - (line - low) / max(high - low, 1e-12))
    return list(zip(x.tolist(), y.tolist()))
