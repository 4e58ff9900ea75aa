"""Uploaded image bytes -> a grayscale pixel array, refusing what is not a photo we can safely decode.

Only JPEG, PNG and WebP are accepted, judged from the bytes themselves (never the file name or the
claimed content type). The pixel count is read from the header and checked before any pixel is decoded,
so a small file that claims to be huge (a decompression bomb) costs nothing.
"""
import io

# Magic numbers of the accepted formats -> Pillow's format name. WebP is RIFF....WEBP.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
)


class ImageError(Exception):
    """An upload that is not an image we accept: `status` and `code` are the HTTP error to answer with."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def image_format(data):
    """Pillow's name for the format of `data` ("JPEG", "PNG" or "WEBP"), or None if it is none of those."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


def decode_image(data, max_pixels):
    """Decode JPEG/PNG/WebP `data` into a grayscale uint8 array (height x width), EXIF orientation applied.

    Animated PNG/WebP give their first frame. Raises ImageError: 415 `unsupported_image_type`,
    413 `image_too_many_pixels` (width x height over `max_pixels`, from the header), 400 `image_undecodable`.
    """
    import numpy as np
    from PIL import Image, ImageOps

    fmt = image_format(data)
    if fmt is None:
        raise ImageError(415, "unsupported_image_type", "The image must be a JPEG, PNG or WebP file.")
    try:
        # Lazy: reads the header only. formats= keeps Pillow from trying every other decoder it has.
        image = Image.open(io.BytesIO(data), formats=[fmt])
    except Image.DecompressionBombError:
        # Pillow's own cap (2 x Image.MAX_IMAGE_PIXELS) tripped while reading the header.
        raise _too_many_pixels(min(max_pixels, Image.MAX_IMAGE_PIXELS)) from None
    except Exception:
        raise _undecodable() from None
    with image:
        width, height = image.size
        # Pillow warns (and decodes anyway) above Image.MAX_IMAGE_PIXELS: refuse those too, whatever the
        # configured cap. Checked here rather than by turning the warning into an error, because
        # warnings.catch_warnings() swaps a process-wide filter list and decoding runs in several threads.
        limit = min(max_pixels, Image.MAX_IMAGE_PIXELS)
        if width * height > limit:
            raise _too_many_pixels(limit)
        try:
            image.seek(0)  # the first frame of an animation (already current after open; made explicit)
            image.load()
        except Exception:
            # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError, struct.error... on
            # truncated or corrupt data: all of them mean the same thing to the caller.
            raise _undecodable() from None
        try:
            # Turning only swaps width and height: the pixel count checked above stays.
            upright = ImageOps.exif_transpose(image)
        except Exception:
            # Unreadable EXIF does not make the pixels unreadable: keep them as stored.
            upright = image
        if upright.mode in ("I", "I;16", "I;16B", "I;16L"):
            # 16-bit grey PNG: convert("L") would clip every level over 255 to white; scale instead.
            pixels = np.clip(np.rint(np.asarray(upright, dtype=np.float64) / 257), 0, 255).astype(np.uint8)
        else:
            pixels = np.asarray(upright.convert("L"), dtype=np.uint8)
    if pixels.ndim != 2 or pixels.size == 0:
        raise _undecodable()
    return np.ascontiguousarray(pixels)


def _too_many_pixels(max_pixels):
    return ImageError(413, "image_too_many_pixels", f"The image has more than {max_pixels} pixels.")


def _undecodable():
    return ImageError(400, "image_undecodable", "The image could not be decoded (truncated or corrupt).")
