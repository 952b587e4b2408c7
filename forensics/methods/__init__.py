"""The explicit registry of forensic methods, in the order they start and reports list them.

The slowest methods come first, so that on a few cores the parallel run ends soonest.

Adding a method: write ``forensics/methods/<name>.py`` with one :class:`Method` subclass and
add it below; ``tests/test_registry.py`` checks that every module of this folder is registered.
"""

from collections.abc import Mapping
from types import MappingProxyType

from forensics.methods.ai_generated import AiGenerated
from forensics.methods.base import Method
from forensics.methods.copymove import CopyMove
from forensics.methods.deep_scan import DeepScan
from forensics.methods.ela import ErrorLevelAnalysis
from forensics.methods.encoder import EncoderMethod
from forensics.methods.enhancement import Enhancement
from forensics.methods.integrity import IntegrityMethod
from forensics.methods.jpeg import JpegMethod
from forensics.methods.metadata import MetadataMethod
from forensics.methods.noise import NoiseInconsistency
from forensics.methods.quality import Quality
from forensics.methods.raw_consistency import RawConsistency
from forensics.methods.recapture import Recapture
from forensics.methods.resave import ResaveMethod

_METHODS: tuple[Method, ...] = (
    CopyMove(),
    DeepScan(),
    NoiseInconsistency(),
    RawConsistency(),
    JpegMethod(),
    EncoderMethod(),
    ResaveMethod(),
    ErrorLevelAnalysis(),
    Enhancement(),
    MetadataMethod(),
    AiGenerated(),
    Recapture(),
    IntegrityMethod(),
    Quality(),
)

REGISTRY: Mapping[str, Method] = MappingProxyType({m.name: m for m in _METHODS})


def get_method(name: str) -> Method:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown method {name!r}; known: {', '.join(REGISTRY)}") from None
