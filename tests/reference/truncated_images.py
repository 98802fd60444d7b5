"""Which damaged image files TensorFlow's `decode_image` refuses, for src/dataset/decode.rs.

Keras's `image_dataset_from_directory` decodes with
`tf.image.decode_image(bytes, channels=3, expand_animations=False)`; a file it refuses stops the
notebook's `fit()`. This script writes small valid files of each format (Pillow encoders) into
tests/reference/truncated_images/, damages each in several ways (cut at several points, bytes
flipped in the middle, bytes appended, format-specific damage such as a bad PNG chunk CRC) and
records whether TensorFlow decodes the result. The Rust test
`decode::strict::tests::damaged_files_are_refused_where_tensorflow_refuses_them` rebuilds every
case from the same files and checks that `decode_rgb` accepts exactly the cases TensorFlow
accepts.

A case is stored as: keep the first `keep` bytes of the file, set `patches` ([offset, byte]) in
them, then append `append` (hex).

Produced with Python 3.11, TensorFlow 2.21.0 and Pillow 13.0.0. Rerun from the repository root:

    python tests/reference/truncated_images.py > tests/reference/truncated_images.json
"""

import io
import json
import os
import struct
import sys
import zlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
from PIL import Image  # noqa: E402
import tensorflow as tf  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
FILES = os.path.join(HERE, "truncated_images")


def source_pixels():
    """23x31 RGB: a gradient with noise (so no format compresses it to almost nothing) and an
    odd width (so BMP rows are padded)."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:23, 0:31]
    base = np.stack([x * 8, y * 11, (x + y) * 4], -1).astype(np.int32)
    return np.clip(base + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)


def encode(image, fmt, **options):
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def make_files():
    rgb = Image.fromarray(source_pixels())
    frame2 = Image.fromarray(255 - source_pixels())
    return {
        "baseline.jpg": encode(rgb, "JPEG", quality=90),
        "progressive.jpg": encode(rgb, "JPEG", quality=90, progressive=True),
        "restart.jpg": encode(rgb, "JPEG", quality=90, restart_marker_blocks=2),
        # A comment segment holding the bytes of an end-of-image marker: only a walk over the
        # segments, not a search for FF D9, tells that a file cut after it is incomplete.
        "comment_eoi.jpg": encode(rgb, "JPEG", quality=90, comment=b"x\xff\xd9y"),
        "rgb.png": encode(rgb, "PNG"),
        "palette.png": encode(rgb.quantize(64), "PNG"),
        "text.png": encode(rgb, "PNG", pnginfo=png_text()),
        "still.gif": encode(rgb, "GIF"),
        "animated.gif": encode(rgb, "GIF", save_all=True, append_images=[frame2], duration=100),
        "rgb24.bmp": encode(rgb, "BMP"),
        "rgba32.bmp": encode(rgb.convert("RGBA"), "BMP"),
    }


def png_text():
    from PIL import PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "a tEXt chunk after the header")
    return info


def png_chunks(data):
    """(offset, type, length) of every chunk."""
    chunks, pos = [], 8
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        chunks.append((pos, data[pos + 4 : pos + 8], length))
        pos += 12 + length
    return chunks


def png_cases(data):
    cases = []
    chunks = png_chunks(data)
    idat = [c for c in chunks if c[1] == b"IDAT"]
    offset, _, length = idat[-1]
    crc_at = offset + 8 + length
    bad_crc = bytearray(data)
    bad_crc[crc_at] ^= 0xFF
    cases.append(("IDAT chunk CRC wrong", bytes(bad_crc)))
    # The zlib stream's Adler-32 (its last 4 bytes) wrong, the chunk's CRC fixed up to match.
    adler = bytearray(data)
    adler[crc_at - 1] ^= 0xFF
    crc = zlib.crc32(bytes(adler[offset + 4 : crc_at]))
    adler[crc_at : crc_at + 4] = struct.pack(">I", crc)
    cases.append(("zlib Adler-32 wrong, CRC fixed up", bytes(adler)))
    # Deflate data damaged in the middle, CRC fixed up: only the decompressor can tell.
    deflate = bytearray(data)
    middle = offset + 8 + length // 2
    for i in range(middle, middle + 4):
        deflate[i] ^= 0x55
    deflate[crc_at : crc_at + 4] = struct.pack(
        ">I", zlib.crc32(bytes(deflate[offset + 4 : crc_at]))
    )
    cases.append(("deflate data damaged, CRC fixed up", bytes(deflate)))
    cases.append(("no IEND chunk", data[: chunks[-1][0]]))
    iend_crc = bytearray(data)
    iend_crc[-1] ^= 0xFF
    cases.append(("IEND chunk CRC wrong", bytes(iend_crc)))
    for pos, kind, length in chunks:
        if kind == b"tEXt":
            text_crc = bytearray(data)
            text_crc[pos + 8 + length] ^= 0xFF
            cases.append(("tEXt chunk CRC wrong", bytes(text_crc)))
    return cases


def jpeg_cases(data):
    # Everything up to the end-of-image marker, then zeros where it should be.
    return [("end-of-image marker replaced by zeros", data[:-2] + b"\0\0")]


def gif_cases(data):
    return [("no trailer byte", data[:-1])]


def bmp_cases(data):
    return [("one byte appended", data + b"\0"), ("four bytes appended", data + b"\0" * 4)]


def cases_of(name, data):
    n = len(data)
    cases = []
    for label, keep in [
        ("cut at 10%", n // 10),
        ("cut at 50%", n // 2),
        ("cut at 90%", n * 9 // 10),
        ("last 2 bytes cut", n - 2),
        ("last byte cut", n - 1),
    ]:
        cases.append((label, data[:keep]))
    cases.append(("16 bytes appended", data + bytes(range(16))))
    for fraction in (3, 2):
        flipped = bytearray(data)
        start = n // fraction
        for i in range(start, start + 4):
            flipped[i] ^= 0x55
        cases.append((f"4 bytes flipped at 1/{fraction}", bytes(flipped)))
    extra = {".jpg": jpeg_cases, ".png": png_cases, ".gif": gif_cases, ".bmp": bmp_cases}
    cases += extra[os.path.splitext(name)[1]](data)
    if name == "comment_eoi.jpg":
        after_comment = data.index(b"x\xff\xd9y") + 4
        cases.append(("cut after the comment holding FF D9", data[:after_comment]))
    return cases


def tensorflow_verdict(data):
    try:
        tf.image.decode_image(data, channels=3, expand_animations=False).numpy()
        return None
    except tf.errors.InvalidArgumentError as e:
        message = e.message.split("}}")[-1].strip()
        return message.replace(" [Op:DecodeImage]", "")


def as_case(original, damaged):
    keep = min(len(original), len(damaged))
    patches = [[i, damaged[i]] for i in range(keep) if damaged[i] != original[i]]
    return keep, patches, damaged[keep:].hex()


def main():
    os.makedirs(FILES, exist_ok=True)
    out = []
    for name, data in make_files().items():
        with open(os.path.join(FILES, name), "wb") as f:
            f.write(data)
        if tensorflow_verdict(data) is not None:
            sys.exit(f"{name}: TensorFlow refuses the undamaged file")
        for label, damaged in cases_of(name, data):
            keep, patches, append = as_case(data, damaged)
            error = tensorflow_verdict(damaged)
            out.append(
                dict(
                    file=name,
                    case=label,
                    keep=keep,
                    patches=patches,
                    append=append,
                    tensorflow_accepts=error is None,
                    tensorflow_error=error,
                )
            )
    print(
        json.dumps(
            dict(
                generator="tests/reference/truncated_images.py",
                tensorflow=tf.__version__,
                pillow=PIL.__version__,
                cases=out,
            ),
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
