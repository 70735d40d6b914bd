"""What each hostile upload of issue 12 costs to decode, or to refuse: time and peak memory.

Builds every file in memory (tests/image_corpus.py's builders, plus two large legal ones),
then runs :func:`cnncompare.uploads.decode_image` on each, as the Classify page does, and
reports the verdict, the wall time, the peak resident memory added to this process (the
server's, with torch loaded, as in the app) and the decoding worker's own peak (Linux).

Peaks come from the kernel's high-water mark (VmHWM), reset before each file by writing 5
to /proc/self/clear_refs; elsewhere the memory columns stay empty. Usage::

    .venv/bin/python benchmarks/classify_decode.py
"""

from __future__ import annotations

import io
import re
import sys
import time
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cnncompare import uploads  # noqa: E402 - after the path set-up above
from tests.image_corpus import (  # noqa: E402
    _segments,
    apng_claiming,
    jpeg_claiming,
    jpeg_cut_short,
    jpeg_flat,
    jpeg_scan_bomb,
    jpeg_with_orientation,
    png_one_bit,
    webp_flat,
)


def _status(field: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    found = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
    return int(found.group(1)) * 1024 if found else None


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def progressive_7000(scans: int) -> bytes:
    """A 7000 x 7000 progressive JPEG (one flat colour) with ``scans`` scans in all."""
    buf = io.BytesIO()
    Image.new("RGB", (7000, 7000), (120, 160, 90)).save(buf, "JPEG", quality=90,
                                                        progressive=True)
    data = buf.getvalue()
    own = [s for s in _segments(data) if s[0] == 0xDA]
    _, start, end = own[-1]
    return data[:end] + data[start:end] * (scans - len(own)) + b"\xff\xd9"


def palette_png(side: int) -> bytes:
    """A square palette PNG with a transparent colour: the costliest PNG mode."""
    buf = io.BytesIO()
    img = Image.new("P", (side, side), 1)
    img.putpalette([255, 255, 255, 30, 60, 90] + [0] * (254 * 3))
    img.save(buf, "PNG", transparency=0)
    return buf.getvalue()


CASES = [
    ("progressive JPEG, 20,000 scans", lambda: jpeg_scan_bomb(20_000)),
    ("progressive JPEG 7000x7000, 100 scans", lambda: progressive_7000(100)),
    ("1-bit PNG 50,000,000 x 1", lambda: png_one_bit(50_000_000, 1)),
    ("1-bit PNG 7000 x 7000", lambda: png_one_bit(7000, 7000)),
    ("lossless WebP 7000 x 7000, one colour", lambda: webp_flat(7000, 7000)),
    ("JPEG 7000 x 7000", lambda: jpeg_flat(7000, 7000)),
    ("palette PNG 7071 x 7071, transparent", lambda: palette_png(7071)),
    ("palette PNG 1700 x 1700 (in process)", lambda: palette_png(1700)),
    ("lossless WebP 1340 x 1340 (in process)", lambda: webp_flat(1340, 1340)),
    ("JPEG 64 x 64 claiming 7000 x 7000", lambda: jpeg_claiming(7000, 7000)),
    ("JPEG cut short, end marker appended", lambda: jpeg_cut_short(0.5)),
    ("JPEG, EXIF orientation 99", lambda: jpeg_with_orientation(99)),
    ("APNG claiming 2,147,483,647 frames", lambda: apng_claiming(2_147_483_647)),
]


def main() -> None:
    print(f"{'file':<40} {'bytes':>10} {'verdict':<9} {'time':>8} {'server +MB':>10} "
          f"{'worker MB':>9}  note")
    for label, build in CASES:
        data = build()
        _reset_peak()
        rss = _status("VmRSS")
        start = time.perf_counter()
        try:
            decoded = uploads.decode_image(data, max_bytes=5 * 2**20)
        except uploads.ImageError as err:
            verdict, note, worker = "refused", str(err), None
        else:
            verdict = "warned" if decoded.warnings else "accepted"
            note = "; ".join(decoded.warnings + decoded.notes) or (
                f"worker, working copy {decoded.image.size}" if decoded.isolated
                else f"in process, working copy {decoded.image.size}")
            worker = decoded.worker_peak
        elapsed = time.perf_counter() - start
        peak = _status("VmHWM")
        added = "" if peak is None or rss is None else f"{max(0, peak - rss) / 2**20:.1f}"
        shown = "" if worker is None else f"{worker / 2**20:.0f}"
        print(f"{label:<40} {len(data):>10,} {verdict:<9} {elapsed:>7.2f}s {added:>10} "
              f"{shown:>9}  {note[:110]}")


if __name__ == "__main__":
    main()
