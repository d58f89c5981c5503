"""Image grids and PNG encoding, for sample grids and pool inspection."""

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
