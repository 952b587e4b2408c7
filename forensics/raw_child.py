"""The RAW decoder's own process: LibRaw (through rawpy) reads one file here, never in a worker.

Run as a script by :func:`forensics.raw.decode_raw` (``python raw_child.py OUT MAX_PIXELS``,
the file's bytes on stdin), so it imports nothing of the engine: only numpy and rawpy. Raw
parsers have a long record of crashes on malformed files (LibRaw's own advisories list
out-of-bounds reads and writes in most makers' decoders); a segfault here ends this process
and the parent reports it. Its steps, each written out before the next begins, so that what
was read survives a crash in a later step:

1. open the file (headers only) and check the sensor's pixel count against the limit, before
   anything is unpacked; write ``OUT.head.npz`` (sizes and the preview);
2. unpack the sensor data, read its CFA pattern and its black and white levels, and render
   it at half size (each 2x2 CFA cell one pixel: no demosaicing); write ``OUT.head.npz``
   again with them, and ``OUT.raw.npz``.

Exit status: 0 done, 3 over the pixel limit, 4 not readable (a message on stderr), 5 the
sensor data not readable (step 1 was written). ``FORENSICS_RAW_TEST_CRASH`` (``open`` or
``unpack``), a test hook, makes the process kill itself with SIGSEGV at that step.
"""

import io
import json
import os
import resource
import signal
import sys

import numpy as np


def _crash_if_asked(step: str) -> None:
    if os.environ.get("FORENSICS_RAW_TEST_CRASH") == step:
        os.kill(os.getpid(), signal.SIGSEGV)


def main(out: str, max_pixels: int, memory_bytes: int) -> int:
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    import rawpy  # after the memory bound: LibRaw's allocations count against it

    data = sys.stdin.buffer.read()
    _crash_if_asked("open")
    try:
        raw = rawpy.imread(io.BytesIO(data))
        sizes = raw.sizes
    except (rawpy.LibRawError, MemoryError, ValueError, OSError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 4
    if sizes.raw_width * sizes.raw_height > max_pixels or sizes.width * sizes.height > max_pixels:
        print(json.dumps({"width": sizes.raw_width, "height": sizes.raw_height}), file=sys.stderr)
        return 3
    if sizes.width <= 0 or sizes.height <= 0:
        print(f"the sensor size is empty ({sizes.width}x{sizes.height})", file=sys.stderr)
        return 4
    head: dict[str, object] = {
        "width": sizes.width,
        "height": sizes.height,
        "raw_width": sizes.raw_width,
        "raw_height": sizes.raw_height,
        "flip": sizes.flip,
        "color_desc": raw.color_desc.decode("ascii", "replace"),
        # the levels are read as the sensor data is unpacked, below: a file cut inside its
        # pixels still gives its header and preview
        "black_levels": [],
        "white_level": 0,
        "camera_whitebalance": [],
        "preview_format": None,
        "preview_problem": None,
    }
    preview = np.zeros(0, np.uint8)
    try:
        thumb = raw.extract_thumb()
        if thumb.format == rawpy.ThumbFormat.JPEG:
            head["preview_format"] = "jpeg"
            preview = np.frombuffer(bytes(thumb.data), np.uint8)
        else:
            head["preview_format"] = "bitmap"
            preview = np.ascontiguousarray(thumb.data, dtype=np.uint8)
    except (rawpy.LibRawError, MemoryError, ValueError) as exc:
        head["preview_problem"] = f"{type(exc).__name__}: {exc}"
    pattern = np.zeros((0, 0), np.int8)  # read with the sensor data, below
    np.savez(out + ".head.npz", head=np.array(json.dumps(head)), preview=preview, pattern=pattern)
    _crash_if_asked("unpack")
    try:
        pattern = np.asarray(raw.raw_pattern if raw.raw_pattern is not None else pattern, np.int8)
        head["black_levels"] = [int(v) for v in raw.black_level_per_channel]
        head["white_level"] = int(raw.white_level)
        head["camera_whitebalance"] = [float(v) for v in raw.camera_whitebalance]
        mosaic = np.array(raw.raw_image_visible, dtype=np.uint16)
        render = raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8, user_flip=0)
    except (rawpy.LibRawError, MemoryError, ValueError) as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 5
    np.savez(out + ".head.npz", head=np.array(json.dumps(head)), preview=preview, pattern=pattern)  # now with the pattern and levels
    np.savez(out + ".raw.npz", mosaic=mosaic, render=np.ascontiguousarray(render, np.uint8))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
