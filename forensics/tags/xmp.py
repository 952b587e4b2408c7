"""Parse an XMP packet (ISO 16684-1) into exiv2-style keys.

Keys are ``Xmp.<prefix>.<property>`` with the prefix exiv2 registers for the property's
namespace (so the old ``xap:`` spelling of the XMP basic schema still reads as
``Xmp.xmp.CreatorTool``), or the packet's own prefix for a namespace exiv2 does not know.
Values keep exiv2's forms: text for a simple property; a list for an unordered or ordered
array of simple items (``rdf:Bag``, ``rdf:Seq``); ``{'lang="x-default"': text}`` for a
language alternative; and for a structure or an array of structures the marker
``type="Struct"`` (or ``type="Seq"``...) with one key per field, such as
``Xmp.xmpMM.History[1]/stEvt:action``.

As Adobe's XMP Toolkit (and so exiv2) does, a legacy ``rdf:about="uuid:..."`` stands for
``xmpMM:InstanceID`` when the packet has none.

The packet is untrusted: ``defusedxml`` refuses entity declarations and external
references, and nesting deeper than :data:`MAX_DEPTH` is cut off.
"""

import io
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

RDF = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
XML = "http://www.w3.org/XML/1998/namespace"
#: Structures nested deeper than this are not followed.
MAX_DEPTH = 16

#: exiv2's prefix for the namespaces it registers.
PREFIXES = {
    "http://purl.org/dc/elements/1.1/": "dc",
    "http://purl.org/dc/terms/": "dcterms",
    "http://ns.adobe.com/xap/1.0/": "xmp",
    "http://ns.adobe.com/xap/1.0/rights/": "xmpRights",
    "http://ns.adobe.com/xap/1.0/mm/": "xmpMM",
    "http://ns.adobe.com/xap/1.0/bj/": "xmpBJ",
    "http://ns.adobe.com/xap/1.0/t/pg/": "xmpTPg",
    "http://ns.adobe.com/xap/1.0/g/img/": "xmpGImg",
    "http://ns.adobe.com/xmp/1.0/DynamicMedia/": "xmpDM",
    "http://ns.adobe.com/xmp/note/": "xmpNote",
    "http://ns.adobe.com/xmp/Identifier/qual/1.0/": "xmpidq",
    "http://ns.adobe.com/xap/1.0/sType/ResourceEvent#": "stEvt",
    "http://ns.adobe.com/xap/1.0/sType/ResourceRef#": "stRef",
    "http://ns.adobe.com/xap/1.0/sType/Version#": "stVer",
    "http://ns.adobe.com/xap/1.0/sType/Job#": "stJob",
    "http://ns.adobe.com/xap/1.0/sType/ManifestItem#": "stMfs",
    "http://ns.adobe.com/xap/1.0/sType/Dimensions#": "stDim",
    "http://ns.adobe.com/xmp/sType/Area#": "stArea",
    "http://ns.adobe.com/pdf/1.3/": "pdf",
    "http://ns.adobe.com/photoshop/1.0/": "photoshop",
    "http://ns.adobe.com/camera-raw-settings/1.0/": "crs",
    "http://ns.adobe.com/lightroom/1.0/": "lr",
    "http://ns.adobe.com/tiff/1.0/": "tiff",
    "http://ns.adobe.com/exif/1.0/": "exif",
    "http://cipa.jp/exif/1.0/": "exifEX",
    "http://ns.adobe.com/exif/1.0/aux/": "aux",
    "http://iptc.org/std/Iptc4xmpCore/1.0/xmlns/": "iptc",
    "http://iptc.org/std/Iptc4xmpExt/2008-02-29/": "iptcExt",
    "http://ns.useplus.org/ldf/xmp/1.0/": "plus",
    "http://ns.microsoft.com/photo/1.0/": "MicrosoftPhoto",
    "http://ns.google.com/photos/1.0/panorama/": "GPano",
    "http://www.metadataworkinggroup.com/schemas/regions/": "mwg-rs",
    "http://www.metadataworkinggroup.com/schemas/keywords/": "mwg-kw",
}
_ARRAYS = {f"{{{RDF}}}Bag": "Bag", f"{{{RDF}}}Seq": "Seq", f"{{{RDF}}}Alt": "Alt"}
_DESCRIPTION = f"{{{RDF}}}Description"
_LI = f"{{{RDF}}}li"
_PARSE_TYPE = f"{{{RDF}}}parseType"
_RESOURCE = f"{{{RDF}}}resource"
_VALUE = f"{{{RDF}}}value"
_LANG = f"{{{XML}}}lang"
_ABOUT = f"{{{RDF}}}about"
_INSTANCE_ID = "Xmp.xmpMM.InstanceID"


class XmpError(ValueError):
    """The packet is not well-formed XML, or declares entities."""


def parse_xmp(packet: bytes) -> dict[str, Any]:
    """The properties of ``packet`` by exiv2 key; raises :class:`XmpError` when it cannot be parsed."""
    # Parsed as text: an encoding the packet declares must not apply to the decoded characters.
    text = _text(packet).strip("\x00 \t\r\n\ufeff")
    try:
        prefixes = _document_prefixes(text)
        root = SafeElementTree.fromstring(text)
    except (ParseError, DefusedXmlException, ValueError) as exc:
        raise XmpError(f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    names = _Names(prefixes)
    out: dict[str, Any] = {}
    rdf = root if root.tag == f"{{{RDF}}}RDF" else next(root.iter(f"{{{RDF}}}RDF"), None)
    descriptions = [d for d in rdf if d.tag == _DESCRIPTION] if rdf is not None else []
    for description in descriptions:
        for attribute, value in description.attrib.items():
            if not attribute.startswith((f"{{{RDF}}}", f"{{{XML}}}")) and attribute.startswith("{"):
                out[f"Xmp.{names.top(attribute)}"] = value
        for child in description:
            _property(child, f"Xmp.{names.top(child.tag)}", out, names, 0)
    about = next((d.attrib[_ABOUT] for d in descriptions if d.attrib.get(_ABOUT, "").startswith("uuid:")), None)
    if about and _INSTANCE_ID not in out:
        out[_INSTANCE_ID] = about
    return out


def _text(packet: bytes) -> str:
    """The packet as text: XMP may be UTF-8, UTF-16 or UTF-32 (ISO 16684-1, 7.1), with or without a byte-order mark."""
    for bom, encoding in ((b"\x00\x00\xfe\xff", "utf-32-be"), (b"\xff\xfe\x00\x00", "utf-32-le"), (b"\xfe\xff", "utf-16-be"), (b"\xff\xfe", "utf-16-le")):
        if packet.startswith(bom):
            return packet[len(bom) :].decode(encoding, "replace")
    if packet[:1] == b"\x00":
        return packet.decode("utf-32-be" if packet[:3] == b"\x00\x00\x00" else "utf-16-be", "replace")
    if packet[1:2] == b"\x00":
        return packet.decode("utf-32-le" if packet[1:4] == b"\x00\x00\x00" else "utf-16-le", "replace")
    return packet.decode("utf-8", "replace")


class _Names:
    """Turns ``{namespace}local`` into exiv2's ``prefix.local`` (top level) or ``prefix:local`` (fields)."""

    def __init__(self, document: dict[str, str]) -> None:
        self._document = document

    def prefix(self, tag: str) -> tuple[str, str]:
        uri, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
        return PREFIXES.get(uri) or self._document.get(uri) or "ns", local

    def top(self, tag: str) -> str:
        prefix, local = self.prefix(tag)
        return f"{prefix}.{local}"

    def field(self, tag: str) -> str:
        prefix, local = self.prefix(tag)
        return f"{prefix}:{local}"


def _document_prefixes(text: str) -> dict[str, str]:
    prefixes: dict[str, str] = {}
    for _event, (prefix, uri) in SafeElementTree.iterparse(io.StringIO(text), events=("start-ns",)):
        prefixes.setdefault(uri, prefix)
    return prefixes


def _property(element: Element, key: str, out: dict[str, Any], names: _Names, depth: int) -> None:
    if depth > MAX_DEPTH:
        return
    if _RESOURCE in element.attrib:
        out[key] = element.attrib[_RESOURCE]
        return
    children = list(element)
    array = next((c for c in children if c.tag in _ARRAYS), None)
    if array is not None:
        _array(array, key, out, names, depth)
        return
    fields = _fields(element)
    if element.attrib.get(_PARSE_TYPE) == "Resource" or fields or children:
        value = next((c for c in children if c.tag == _VALUE), None)
        if value is not None:  # a qualified simple value
            out[key] = value.text or ""
            return
        out[key] = 'type="Struct"'
        _structure(element, key, out, names, depth)
        return
    out[key] = element.text or ""


def _fields(element: Element) -> dict[str, str]:
    return {a: v for a, v in element.attrib.items() if a.startswith("{") and not a.startswith((f"{{{RDF}}}", f"{{{XML}}}"))}


def _structure(element: Element, key: str, out: dict[str, Any], names: _Names, depth: int) -> None:
    """The fields of a structure: attributes and child elements, also inside an ``rdf:Description``."""
    for holder in [element, *(c for c in element if c.tag == _DESCRIPTION)]:
        for attribute, value in _fields(holder).items():
            out[f"{key}/{names.field(attribute)}"] = value
        for child in holder:
            if child.tag != _DESCRIPTION:
                _property(child, f"{key}/{names.field(child.tag)}", out, names, depth + 1)


def _array(array: Element, key: str, out: dict[str, Any], names: _Names, depth: int) -> None:
    items = [li for li in array if li.tag == _LI]
    kind = _ARRAYS[array.tag]
    if kind == "Alt" and items and all(_LANG in li.attrib for li in items):
        out[key] = {f'lang="{li.attrib[_LANG]}"': li.text or "" for li in items}
        return
    if all(not list(li) and not _fields(li) and li.attrib.get(_PARSE_TYPE) != "Resource" for li in items):
        out[key] = [li.text or "" for li in items]
        return
    out[key] = f'type="{kind}"'
    for index, li in enumerate(items, start=1):
        _property(li, f"{key}[{index}]", out, names, depth + 1)
