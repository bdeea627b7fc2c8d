"""Pixel Data codecs: JPEG 2000 recompression (``j2k``) on openjpeg's C API
(``opj``, internal: its errors leave the package as CompressionError)."""
