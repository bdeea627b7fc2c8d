"""Write the bundled messy example folder.

Usage: python examples/make_examples.py [DIR]   (default: examples/messy)

Output is deterministic: running twice gives byte-identical files.
"""

from __future__ import annotations

import sys
from collections import Counter
from pathlib import Path

# The generator lives with the tests (tests/support/synthetic.py), not in the
# installed package; `python examples/make_examples.py` puts only examples/ on
# sys.path, so make the repository root importable first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.synthetic import make_example_corpus  # noqa: E402  (needs the path above)


def main(argv: list[str] | None = None) -> int:
    """Generate the corpus into the given (or default) directory."""
    argv = sys.argv[1:] if argv is None else argv
    root = Path(argv[0]) if argv else Path(__file__).resolve().parent / "messy"
    info = make_example_corpus(root)
    modalities = Counter(info["modalities"].values())
    encodings = Counter(info["encodings"].values())
    print(
        f"Wrote {len(info['instances'])} DICOM instances "
        f"({', '.join(f'{n} {m}' for m, n in sorted(modalities.items()))}) for "
        f"{info['patients']} patients in {info['studies']} studies / {info['series']} series, "
        f"encoded as {', '.join(f'{n} {e}' for e, n in sorted(encodings.items()))}, "
        f"plus {len(info['junk'])} junk files ({', '.join(info['junk'])}); "
        f"{info['total_bytes'] / 1024:.0f} KiB under {root}."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
