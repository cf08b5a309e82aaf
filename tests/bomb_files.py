"""Hostile files for the input-handling tests: tiny files whose headers promise huge images.

Every builder returns the file's bytes. ``SIDE`` x ``SIDE`` pixels is far over any pixel limit.
"""
from __future__ import annotations

import gzip
import io
import json
import struct
import zlib

import numpy as np
from PIL import Image

from fusion.saliency import Method

SIDE = 20000


def small_image(h: int = 16, w: int = 16) -> np.ndarray:
    return (np.add.outer(np.arange(h), np.arange(w)) * 7 % 256).astype(np.uint8)


def encoded(fmt: str, h: int = 16, w: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(small_image(h, w)).save(buffer, format=fmt)
    return buffer.getvalue()


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(side: int = SIDE, rows: int = 64) -> bytes:
    """A grey 8-bit PNG of side x side whose data (``rows`` zero rows, then cut) compresses to almost nothing."""
    raw = zlib.compress(b"\0" * ((side + 1) * rows), 9)
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", raw)
            + _png_chunk(b"IEND", b""))


def gif_bomb(side: int = SIDE) -> bytes:
    """A GIF whose logical screen and one frame are side x side (a 2-colour table, one pixel of data)."""
    side = min(side, 65535)
    screen = b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
    frame = b"," + struct.pack("<HHHHB", 0, 0, side, side, 0) + b"\x02\x02\x44\x01\x00"
    return screen + frame + b";"


def tiff_bomb(side: int = SIDE) -> bytes:
    """A little-endian grey TIFF whose tags say side x side, with one strip of 16 bytes."""
    tags = [(256, 4, side), (257, 4, side), (258, 3, 8), (259, 3, 1), (262, 3, 1),
            (273, 4, 0), (278, 4, side), (279, 4, 16)]
    ifd_size = 2 + 12 * len(tags) + 4
    data_offset = 8 + ifd_size
    tags[5] = (273, 4, data_offset)
    ifd = struct.pack("<H", len(tags)) + b"".join(
        struct.pack("<HHI", tag, kind, 1) + (struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value))
        for tag, kind, value in tags) + struct.pack("<I", 0)
    return b"II*\0" + struct.pack("<I", 8) + ifd + b"\0" * 16


def bmp_bomb(side: int = SIDE) -> bytes:
    """A 24-bit BMP whose header says side x side, holding 16 bytes of pixels."""
    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 24, 0, 0, 2835, 2835, 0, 0)
    pixels = b"\0" * 16
    return b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info)) + info + pixels


def jpeg_bomb(side: int = 65000) -> bytes:
    """A small JPEG whose frame header (SOF0) was changed to say side x side."""
    data = bytearray(encoded("JPEG"))
    at = data.index(b"\xff\xc0")
    data[at + 5:at + 9] = struct.pack(">HH", side, side)
    return bytes(data)


def npy_bomb(side: int = 100_000) -> bytes:
    """A .npy header for a side x side float64 array (80 GB), followed by 64 bytes."""
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (side, side)})
    return buffer.getvalue() + b"\0" * 64


def _nifti_header(shape: tuple[int, ...], dtype=np.float64) -> bytes:
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_data_offset(352)
    return header.binaryblock + b"\0" * 4


def nii_bomb(side: int = 12000) -> bytes:
    """An uncompressed NIfTI-1 header for one side x side float64 slice, with 1 kB of data."""
    return _nifti_header((side, side, 1)) + b"\0" * 1024


def nii_gz_bomb(side: int = 12000, mb: int = 64) -> bytes:
    """A gzipped NIfTI-1 of one side x side float64 slice: a real header, then ``mb`` MB of zeros (then cut)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [packer.compress(_nifti_header((side, side, 1)))]
    zeros = b"\0" * 2**20
    parts += [packer.compress(zeros) for _ in range(mb)]
    return b"".join(parts) + packer.flush()


def nii_volume_bomb() -> bytes:
    """A gzipped NIfTI-1 of 512 x 512 x 4096 int16 slices (2 GB): each slice fits, the volume does not."""
    return gzip.compress(_nifti_header((512, 512, 4096), np.int16) + b"\0" * 4096)


def _dense_file(f, side: int, field: int = 1) -> None:
    """The attributes, maps and pair of a format-2 dense result of side x side (all arrays small or unwritten)."""
    f.attrs.update(format="fusion-saliency dense Jacobian", format_version=2, method=Method.CROPS.value, reason="",
                   field=json.dumps({"up": field, "down": field, "left": field, "right": field, "stride": 1,
                                     "local": True, "reason": None}), receptive_field=2 * field + 1)
    for key in ("model", "weights_hash", "pair_id", "method_version"):
        f.attrs[key] = "weighted-average" if key == "model" else ""
    rng = np.random.default_rng(0)
    for group, keys in (("maps", ("guidance_a", "guidance_b", "influence_a", "influence_b", "fused")),
                        ("pair", ("a", "b"))):
        for key in keys:
            if side <= 256:
                f.create_dataset(f"{group}/{key}", data=rng.random((side, side), dtype=np.float32))
            else:  # declared only: no storage, the file stays tiny
                f.create_dataset(f"{group}/{key}", shape=(side, side), dtype=np.float32, chunks=(64, 64),
                                 compression="gzip")


def h5_bytes(build) -> bytes:
    import h5py

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        build(f)
    return buffer.getvalue()


def h5_map_bomb(side: int = SIDE) -> bytes:
    """A dense result whose maps are declared side x side (nothing stored)."""
    return h5_bytes(lambda f: _dense_file(f, side))


def h5_band_bomb(side: int = 64, field: int = 60) -> bytes:
    """A small dense result with a gzip banded Jacobian of 2 x 240 MB, all zeros (one chunk stored)."""
    def build(f):
        _dense_file(f, side, field)
        rows = 2 * field + 1
        for key in "ab":
            band = f.create_dataset(f"band/{key}", shape=(side, side, rows, rows), dtype=np.float32,
                                    chunks=(8, 8, rows, rows), compression="gzip", shuffle=True)
            band[:8, :8] = 0.0
    return h5_bytes(build)


def h5_chunk_bomb(side: int = 64) -> bytes:
    """A small dense result whose first map is stored in one 4096 x 4096 float64 chunk (128 MB to read)."""
    def build(f):
        _dense_file(f, side)
        del f["maps/guidance_a"]
        data = f.create_dataset("maps/guidance_a", shape=(side, side), maxshape=(None, None), dtype=np.float64,
                                chunks=(4096, 4096), compression="gzip")
        data[0, 0] = 1.0
    return h5_bytes(build)


#: name -> (file name, builder): one tiny file with a huge header per accepted image format.
IMAGE_BOMBS = {
    "png": ("bomb.png", png_bomb), "gif": ("bomb.gif", gif_bomb), "tiff": ("bomb.tif", tiff_bomb),
    "bmp": ("bomb.bmp", bmp_bomb), "jpeg": ("bomb.jpg", jpeg_bomb), "npy": ("bomb.npy", npy_bomb),
    "nii": ("bomb.nii", nii_bomb), "nii.gz": ("bomb.nii.gz", nii_gz_bomb),
    "nii-volume": ("volume.nii.gz", nii_volume_bomb),
}
