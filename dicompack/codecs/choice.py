"""What the pixel-recompression stage is asked for: the codec (JPEG 2000,
HTJ2K, JPEG-LS), the mode (lossless or how far a lossy mode may go) and
the checks.  Parsed from the command line here, so the CLI only calls
``parse_j2k_option`` / ``parse_codec_options``."""
from __future__ import annotations

from dataclasses import dataclass

from dicompack.enums import StrEnum
from dicompack.errors import UsageError


class Codec(StrEnum):
    """Which encoder writes the Pixel Data (``--codec``)."""
    J2K = "j2k"          # JPEG 2000 Part 1 (openjpeg): .90 lossless, .91 lossy
    HTJ2K = "htj2k"      # High-Throughput JPEG 2000 (OpenJPH): .201 lossless
    JPEGLS = "jpegls"    # JPEG-LS (CharLS): .80 lossless, .81 near-lossless


class J2KMode(StrEnum):
    """What ``--j2k`` asks for: the value says how far a lossy mode may go."""
    LOSSLESS = "lossless"     # reversible, verified by decoding
    RATIO = "ratio"           # J2K: irreversible 9/7 at a compression ratio
    PSNR = "psnr"             # J2K: irreversible 9/7 down to a PSNR (dB)
    NEAR = "near"             # JPEG-LS: near-lossless, every sample within NEAR of the source


# The lossy modes each codec can enforce.  OpenJPH (HTJ2K) has no rate or
# distortion control, only a quantisation step: neither a ratio nor a PSNR
# could be promised, so HTJ2K is lossless only here.
LOSSY_MODES = {Codec.J2K: (J2KMode.RATIO, J2KMode.PSNR), Codec.HTJ2K: (), Codec.JPEGLS: (J2KMode.NEAR,)}
MAX_NEAR = 255     # JPEG-LS (ISO 14495-1 C.2.4.1.1): NEAR <= min(255, MAXVAL / 2)


@dataclass(frozen=True)
class J2KOptions:
    mode: J2KMode                  # a plain string ('lossless', 'ratio', 'psnr', 'near') is accepted and converted
    value: float | None = None     # the ratio, the PSNR or NEAR; None for lossless
    verify: bool = True
    transcode: bool = False
    force: bool = False
    codec: Codec = Codec.J2K       # a plain string ('j2k', 'htj2k', 'jpegls') is accepted and converted

    def __post_init__(self) -> None:
        # frozen: the conversion goes through object.__setattr__, as dataclasses do
        object.__setattr__(self, "mode", J2KMode(self.mode))
        object.__setattr__(self, "codec", Codec(self.codec))
        if self.lossy and self.mode not in LOSSY_MODES[self.codec]:
            allowed = ", ".join(f"{m}:N" for m in LOSSY_MODES[self.codec]) or "no lossy mode"
            raise UsageError(f"--codec {self.codec} cannot do --j2k {self.mode} ({self.codec} takes lossless"
                             f"{' or ' + allowed if LOSSY_MODES[self.codec] else ' only'})")
        if self.mode == J2KMode.NEAR and (self.value is None or self.value != int(self.value)
                                          or not 1 <= self.value <= MAX_NEAR):
            raise UsageError(f"--j2k near:N takes a whole N from 1 to {MAX_NEAR}, not {self.value}")

    @property
    def lossy(self) -> bool:
        return self.mode != J2KMode.LOSSLESS


def parse_j2k_option(text: str, codec: Codec | str = Codec.J2K) -> J2KOptions:
    """'lossless' | 'ratio:N' | 'psnr:DB' (J2K) | 'near:N' (JPEG-LS)."""
    codec = codec if isinstance(codec, Codec) else parse_codec(codec)
    if text == J2KMode.LOSSLESS:
        return J2KOptions(J2KMode.LOSSLESS, codec=codec)
    kind, _, number = text.partition(":")
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if kind == J2KMode.RATIO and value > 1:
        return J2KOptions(J2KMode.RATIO, value, codec=codec)
    if kind == J2KMode.PSNR and value > 0:
        return J2KOptions(J2KMode.PSNR, value, codec=codec)
    if kind == J2KMode.NEAR and value >= 1:
        return J2KOptions(J2KMode.NEAR, value, codec=codec)
    raise UsageError(f"--j2k takes lossless, ratio:N (N > 1), psnr:DB or near:N (JPEG-LS), not {text!r}")


def parse_codec(text: str) -> Codec:
    try:
        return Codec(text.lower())
    except ValueError:
        raise UsageError(f"--codec takes {', '.join(Codec)}, not {text!r}") from None


def parse_codec_options(codec: str | None, j2k: str | None) -> J2KOptions | None:
    """``--codec`` and ``--j2k`` together: ``--j2k`` alone is JPEG 2000 as
    before; ``--codec`` alone means lossless with that codec; neither: no
    recompression."""
    if codec is None and j2k is None:
        return None
    return parse_j2k_option(j2k or J2KMode.LOSSLESS, parse_codec(codec) if codec is not None else Codec.J2K)
