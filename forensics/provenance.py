"""Read provenance metadata: C2PA manifest stores and XMP packets, offline and defensively.

C2PA (Coalition for Content Provenance and Authenticity, "C2PA Technical Specification",
v2.1, 2024) binds signed *manifests* to an asset; each manifest's ``c2pa.actions``
assertion may name the IPTC ``digitalSourceType`` of what was done (IPTC NewsCodes
"Digital Source Type", e.g. ``trainedAlgorithmicMedia`` for generative-AI output). XMP
(ISO 16684-1) carries the same vocabulary unsigned in ``Iptc4xmpExt:DigitalSourceType``.

The manifest store is read with the C2PA reference SDK (``c2pa-python``) with network
access switched off: a manifest stored remotely is reported by its URL, never fetched,
and OCSP is not queried. Validation is reported as the SDK states it: ``Valid`` means the
signature and the content hashes check out; it says nothing about who signed (no trust
list is configured, so every signer is reported as untrusted). No exception escapes: a
broken or unsupported manifest becomes a :class:`C2paReport` with ``error`` set.

The XMP facts are taken from the image's parsed XMP (``DecodedImage.metadata``, see
:mod:`forensics.tags.xmp`), by property name in whatever namespace or structure they stand.
"""

import io
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import c2pa

from forensics.formats import ImageFormat
from forensics.tags import FileMetadata

logger = logging.getLogger(__name__)

IPTC_SOURCE_PREFIX = "http://cv.iptc.org/newscodes/digitalsourcetype/"
#: Digital source types that mean a trained generative model made the whole image.
AI_GENERATED_SOURCE_TYPES = frozenset({"trainedAlgorithmicMedia"})
#: Digital source types that mean a generative model made part of the image.
AI_COMPOSITE_SOURCE_TYPES = frozenset({"compositeWithTrainedAlgorithmicMedia"})

#: The formats whose embedded manifest store c2pa reads (every one but BMP).
_C2PA_FORMATS = frozenset(ImageFormat) - {ImageFormat.BMP}
_OFFLINE_SETTINGS = {"verify": {"remote_manifest_fetch": False, "ocsp_fetch": False}}
_REMOTE_URL = re.compile(r"(https?://\S+)")


def source_type_name(value: str) -> str:
    """The IPTC term of a digital source type URI (``.../trainedAlgorithmicMedia`` -> ``trainedAlgorithmicMedia``)."""
    value = value.strip()
    return value.rsplit("/", 1)[-1] if value.startswith(("http://", "https://")) else value


@dataclass(frozen=True, slots=True)
class ManifestSummary:
    """What one manifest of the store says about how the asset was made."""

    label: str
    active: bool
    generators: tuple[str, ...]
    source_types: tuple[str, ...]
    software_agents: tuple[str, ...]
    actions: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "active": self.active,
            "claim_generators": list(self.generators),
            "digital_source_types": list(self.source_types),
            "software_agents": list(self.software_agents),
            "actions": list(self.actions),
        }


@dataclass(frozen=True, slots=True)
class C2paReport:
    """The outcome of reading a C2PA manifest store (``present`` False when there is none)."""

    present: bool
    validation_state: str | None = None
    failures: tuple[str, ...] = ()
    untrusted_signer: bool = False
    remote_url: str | None = None
    error: str | None = None
    manifests: tuple[ManifestSummary, ...] = field(default_factory=tuple)

    @property
    def signature_valid(self) -> bool:
        return self.validation_state in ("Valid", "Trusted")

    def to_dict(self) -> dict[str, Any]:
        return {
            "present": self.present,
            "validation_state": self.validation_state,
            "failures": list(self.failures),
            "untrusted_signer": self.untrusted_signer,
            "remote_url": self.remote_url,
            "error": self.error,
            "manifests": [m.to_dict() for m in self.manifests],
        }


def read_c2pa(data: bytes, fmt: ImageFormat) -> C2paReport:
    """Read and validate the C2PA manifest store embedded in ``data``, offline; never raises."""
    if fmt not in _C2PA_FORMATS:
        return C2paReport(present=False, error=f"C2PA reading is not supported for {fmt.value.upper()}")
    try:
        context = c2pa.Context(c2pa.Settings.from_dict(_OFFLINE_SETTINGS))
        reader = c2pa.Reader.try_create(fmt.mime_type, io.BytesIO(data), context=context)
        if reader is None:
            return C2paReport(present=False)
        with reader:
            store = json.loads(reader.json())
    except c2pa.C2paError as exc:
        message = str(exc)
        remote = _REMOTE_URL.search(message) if "remote" in message.lower() else None
        if remote:
            return C2paReport(present=True, remote_url=remote.group(1).rstrip(".,;"))
        if "ManifestNotFound" in type(exc).__name__:
            return C2paReport(present=False)
        logger.info("C2PA manifest store unreadable: %s", message)
        return C2paReport(present=True, validation_state="Unreadable", error=f"{type(exc).__name__.strip('_')}: {message}")
    except (ValueError, TypeError, OSError, RuntimeError) as exc:
        logger.info("C2PA manifest store unreadable: %s", exc)
        return C2paReport(present=True, validation_state="Unreadable", error=f"{type(exc).__name__}: {exc}")
    return _summarise_store(store)


def _summarise_store(store: Mapping[str, Any]) -> C2paReport:
    active = store.get("active_manifest")
    statuses = [s for s in store.get("validation_status") or [] if isinstance(s, Mapping)]
    codes = [str(s.get("code", "")) for s in statuses]
    failures = tuple(sorted({c for c in codes if c and c != "signingCredential.untrusted"}))
    manifests = tuple(
        _summarise_manifest(label, manifest, label == active)
        for label, manifest in (store.get("manifests") or {}).items()
        if isinstance(manifest, Mapping)
    )
    return C2paReport(
        present=True,
        validation_state=str(store.get("validation_state") or ("Invalid" if failures else "Valid")),
        failures=failures,
        untrusted_signer="signingCredential.untrusted" in codes,
        manifests=tuple(sorted(manifests, key=lambda m: not m.active)),
    )


def _summarise_manifest(label: str, manifest: Mapping[str, Any], active: bool) -> ManifestSummary:
    generators: list[str] = []
    if isinstance(manifest.get("claim_generator"), str):
        generators.append(manifest["claim_generator"])
    for info in manifest.get("claim_generator_info") or []:
        if isinstance(info, Mapping) and isinstance(info.get("name"), str):
            generators.append(str(info["name"]) + (f"/{info['version']}" if isinstance(info.get("version"), str) else ""))
    source_types: list[str] = []
    agents: list[str] = []
    actions: list[str] = []
    for assertion in manifest.get("assertions") or []:
        if not isinstance(assertion, Mapping) or not str(assertion.get("label", "")).startswith("c2pa.actions"):
            continue
        body = assertion.get("data")
        for action in (body.get("actions") if isinstance(body, Mapping) else None) or []:
            if not isinstance(action, Mapping):
                continue
            actions.append(str(action.get("action", "")))
            if isinstance(action.get("digitalSourceType"), str):
                source_types.append(source_type_name(action["digitalSourceType"]))
            agent = action.get("softwareAgent")
            name = agent.get("name") if isinstance(agent, Mapping) else agent
            if isinstance(name, str):
                agents.append(name)
    return ManifestSummary(
        label=str(label),
        active=active,
        generators=tuple(dict.fromkeys(generators)),
        source_types=tuple(dict.fromkeys(source_types)),
        software_agents=tuple(dict.fromkeys(agents)),
        actions=tuple(actions),
    )


@dataclass(frozen=True, slots=True)
class XmpFacts:
    """The provenance-related XMP fields found in an image's XMP packets."""

    packets: int = 0
    source_types: tuple[str, ...] = ()
    ai_systems: tuple[str, ...] = ()
    creator_tools: tuple[str, ...] = ()
    provenance_urls: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "packets": self.packets,
            "digital_source_types": list(self.source_types),
            "ai_systems_used": list(self.ai_systems),
            "creator_tools": list(self.creator_tools),
            "provenance_urls": list(self.provenance_urls),
        }


#: XMP property names (in any namespace) and the fact each one gives.
_XMP_FACTS = {"DigitalSourceType": "source_types", "AISystemUsed": "ai_systems", "CreatorTool": "creator_tools", "provenance": "provenance_urls"}


def xmp_facts(metadata: FileMetadata) -> XmpFacts:
    """Digital source types, AI systems, creator tools and provenance URLs from the parsed XMP."""
    found: dict[str, list[str]] = {fact: [] for fact in _XMP_FACTS.values()}
    for key, value in metadata.xmp.items():
        fact = _XMP_FACTS.get(re.split(r"[.:/]", key)[-1])
        if fact is None:
            continue
        values = value.values() if isinstance(value, Mapping) else [value] if isinstance(value, str) else value
        for text in (v.strip() for v in values if isinstance(v, str)):
            if text:
                found[fact].append(source_type_name(text) if fact == "source_types" else text)
    return XmpFacts(packets=metadata.xmp_packets, **{fact: tuple(dict.fromkeys(texts)) for fact, texts in found.items()})
