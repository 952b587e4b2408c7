"""forensics.tags: EXIF, IPTC and XMP of real files under exiv2's keys, damaged blocks, hostile
XMP, and the one parsed metadata object every method shares."""

import io
import pickle
import struct

import numpy as np
import pytest
from PIL import Image

import forensics.image
from forensics.errors import ForensicsError
from forensics.exif import extract_metadata
from forensics.finding import Status
from forensics.image import DecodedImage, load_image
from forensics.methods.ai_generated import AiGenerated
from forensics.methods.encoder import EncoderMethod
from forensics.methods.metadata import MetadataMethod, extraction
from forensics.pipeline import file_info, run_methods
from forensics.tags import FileMetadata, MetadataBlocks, read_metadata
from forensics.tags.xmp import XmpError, parse_xmp
from tests.conftest import dataset, jpeg_bytes

_RDF = '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'


def _reference(folder: str, name: str) -> DecodedImage:
    sample = next(s for s in dataset(folder) if s.path.name == name)
    return load_image(sample.path.read_bytes(), filename=name)


def _corrupted(image: DecodedImage, offset: int, value: bytes) -> DecodedImage:
    """A JPEG whose EXIF block has ``value`` written at ``offset`` (from the TIFF header)."""
    start = image.data.index(b"Exif\x00\x00") + 6
    data = bytearray(image.data)
    data[start + offset : start + offset + len(value)] = value
    return load_image(bytes(data))


def test_camera_jpeg_exif_under_exiv2_keys() -> None:
    meta = _reference("exif_samples_ianare", "Canon_40D.jpg").metadata
    assert meta.reader == "exifread" and not meta.problems
    exif = meta.exif
    assert exif["Exif.Image.Make"] == "Canon" and exif["Exif.Image.Model"] == "Canon EOS 40D"
    assert exif["Exif.Image.Software"] == "GIMP 2.4.5" and exif["Exif.Image.DateTime"] == "2008:07:31 10:38:11"
    assert exif["Exif.Photo.DateTimeOriginal"] == "2008:05:30 15:56:01"
    assert (exif["Exif.Photo.FNumber"], exif["Exif.Photo.ExposureTime"], exif["Exif.Photo.ISOSpeedRatings"]) == ("71/10", "1/160", "100")
    assert exif["Exif.Photo.ExifVersion"] == "48 50 50 49"  # bytes as decimal numbers, as exiv2 writes them
    assert (exif["Exif.Photo.PixelXDimension"], exif["Exif.Photo.PixelYDimension"]) == ("100", "68")
    assert exif["Exif.Iop.InteroperabilityIndex"] == "R98" and exif["Exif.GPSInfo.GPSVersionID"] == "2 2 0 0"
    with Image.open(io.BytesIO(meta.thumbnail)) as thumbnail:
        assert thumbnail.format == "JPEG" and thumbnail.size == (68, 46)


def test_heic_exif_gps_maker_note_and_xmp() -> None:
    image = _reference("exif_samples_ianare", "IMG_5195.HEIC")
    meta = image.metadata
    assert (meta.exif["Exif.Image.Make"], meta.exif["Exif.Image.Model"]) == ("Apple", "iPhone 11 Pro Max")
    assert meta.exif["Exif.Photo.OffsetTimeOriginal"] == "-05:00"
    assert (meta.exif["Exif.GPSInfo.GPSLatitudeRef"], meta.exif["Exif.GPSInfo.GPSLongitudeRef"]) == ("N", "W")
    assert meta.exif["Exif.Apple.MakerNoteVersion"] == "12"
    assert meta.xmp["Xmp.xmp.CreatorTool"] == "14.4.2"
    extracted = extract_metadata(image)
    # 39 deg 3' 4.84" N, 94 deg 17' 19.58" W, 244927/940 m, as ExifTool reads them
    assert extracted["gps"]["latitude"] == pytest.approx(39.0513444, abs=1e-6)
    assert extracted["gps"]["longitude"] == pytest.approx(-94.2887722, abs=1e-6)
    assert extracted["gps"]["altitude_m"] == pytest.approx(260.56, abs=0.01)
    assert extracted["dates"]["date_time_original"] == "2021-04-11T15:47:53-05:00"
    assert extracted["maker_notes"] == {"present": True, "groups": ["Apple"]}


def test_heic_orientation_is_what_the_file_says() -> None:
    """libheif rotates the pixels and pi-heif's Pillow copy of the EXIF then says 1; the report says 6."""
    image = _reference("exif_samples_ianare", "iphone_13_pro_max.HEIC")
    assert image.metadata.exif["Exif.Image.Orientation"] == "6"


def test_xmp_simple_values_alternatives_arrays_and_structures() -> None:
    meta = _reference("exif_samples_ianare", "BlueSquare.jpg").metadata
    xmp = meta.xmp
    assert meta.xmp_packets == 1
    assert xmp["Xmp.xmp.CreatorTool"] == "Adobe Photoshop CS2 Macintosh"
    assert xmp["Xmp.xmp.ModifyDate"] == "2005-09-07T15:09:51-07:00"
    assert xmp["Xmp.dc.title"] == {'lang="x-default"': "Blue Square Test File - .jpg"}
    assert xmp["Xmp.dc.subject"] == ["XMP", "Blue Square", "test file", "Photoshop", ".jpg"]
    assert xmp["Xmp.xmpMM.DerivedFrom"] == 'type="Struct"'
    assert xmp["Xmp.xmpMM.DerivedFrom/stRef:documentID"] == "uuid:9A3B7F4E214211DAB6308A7391270C13"
    assert xmp["Xmp.tiff.BitsPerSample"] == ["8", "8", "8"]


def test_xmp_in_utf16_arrays_of_structures_and_legacy_prefixes() -> None:
    xmp = _reference("exiftool_test_images", "ExifTool.jpg").metadata.xmp
    assert xmp["Xmp.dc.description"] == {'lang="x-default"': "UTF-16 (big-endian) encoded XMP"}
    assert xmp["Xmp.dc.creator"] == ["Phil Harvey"]
    assert xmp["Xmp.xmpBJ.JobRef"] == 'type="Bag"' and xmp["Xmp.xmpBJ.JobRef[1]/stJob:name"] == "My Job"
    # Photoshop CS wrote the XMP basic schema as xap: and its uuid as rdf:about
    casia = _reference("casia2_samples", "Tp_D_CRN_M_N_pla00035_pla00033_10997.jpg").metadata.xmp
    assert casia["Xmp.xmp.CreatorTool"] == "Adobe Photoshop CS Windows"
    assert casia["Xmp.xmpMM.InstanceID"] == "uuid:919eb99c-8a38-11de-8baf-ab3ac7413da8"


def test_gif_xmp_from_its_application_extension(astronaut: np.ndarray) -> None:
    assert _reference("exiftool_test_images", "GIF.gif").metadata.xmp == {"Xmp.dc.title": {'lang="x-default"': "GIF with XMP"}}
    buf = io.BytesIO()
    Image.fromarray(astronaut[::4, ::4]).convert("P").save(buf, format="GIF")
    packet = (
        f'<x:xmpmeta xmlns:x="adobe:ns:meta/">{_RDF}<rdf:Description xmlns:Iptc4xmpExt="http://iptc.org/std/Iptc4xmpExt/2008-02-29/" '
        'Iptc4xmpExt:DigitalSourceType="http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"/></rdf:RDF></x:xmpmeta>'
    ).encode()
    trailer = bytes([1, *range(255, -1, -1), 0])  # XMP part 3: makes the packet a chain of GIF sub-blocks
    gif = buf.getvalue()[:-1] + b"\x21\xff\x0bXMP DataXMP" + packet + trailer + b"\x3b"
    finding = AiGenerated().run(load_image(gif))
    assert finding.details["xmp"]["digital_source_types"] == ["trainedAlgorithmicMedia"] and finding.score > 90


def test_iptc_of_jpeg_and_tiff() -> None:
    iptc = _reference("exif_samples_ianare", "BlueSquare.jpg").metadata.iptc
    assert iptc["Iptc.Application2.ObjectName"] == "Blue Square Test File - .jpg"
    assert iptc["Iptc.Application2.Keywords"] == ["XMP", "Blue Square", "test file", "Photoshop", ".jpg"]
    assert iptc["Iptc.Application2.RecordVersion"] == "2"
    dated = _reference("exif_samples_ianare", "87_OSError.jpg").metadata.iptc
    assert (dated["Iptc.Application2.DateCreated"], dated["Iptc.Application2.TimeCreated"]) == ("2005-12-14", "14:39:47+00:00")
    tiff = _reference("exiftool_test_images", "ExifTool.tif").metadata
    assert tiff.exif["Exif.Image.Model"] == "Canon EOS DIGITAL REBEL"
    assert tiff.iptc["Iptc.Application2.Caption"] == "The picture caption" and tiff.iptc["Iptc.Application2.Byline"] == ["I'm the author"]


def test_a_damaged_maker_note_keeps_the_other_tags() -> None:
    image = _reference("exif_samples_ianare", "Nikon_COOLPIX_P1.jpg")
    assert any(key.startswith("Exif.Nikon3.") for key in image.metadata.exif)
    tiff = image.metadata_blocks.exif
    note = tiff.index(b"Nikon\x00\x02")
    # the fifth maker-note entry's type becomes 13 (IFD), which ExifRead's Nikon decoder cannot take
    damaged = _corrupted(image, note + 68, b"\x0d").metadata
    assert any("with its maker notes" in p for p in damaged.problems), damaged.problems
    assert damaged.reader == "exifread" and not any(key.startswith("Exif.Nikon3.") for key in damaged.exif)
    for key in ("Exif.Image.Make", "Exif.Image.Model", "Exif.Photo.DateTimeOriginal", "Exif.Photo.ExposureTime"):
        assert damaged.exif[key] == image.metadata.exif[key]


def test_a_damaged_exif_directory_falls_back_to_pillow_for_the_readable_tags() -> None:
    image = _reference("exif_samples_ianare", "Canon_40D.jpg")
    tiff = image.metadata_blocks.exif
    count = struct.unpack("<H", tiff[8:10])[0]
    entry = next(10 + 12 * i for i in range(count) if struct.unpack("<H", tiff[10 + 12 * i : 12 + 12 * i])[0] == 0x8769)
    damaged = _corrupted(image, entry + 4, struct.pack("<I", 70_000)).metadata  # the Exif IFD pointer claims 70 000 values
    assert damaged.reader == "pillow"
    assert any("ExifRead could not read" in p for p in damaged.problems) and any(p.startswith("Pillow:") for p in damaged.problems)
    assert (damaged.exif["Exif.Image.Make"], damaged.exif["Exif.Image.Software"]) == ("Canon", "GIMP 2.4.5")
    assert extraction(MetadataMethod().run(_corrupted(image, entry + 4, struct.pack("<I", 70_000))))["make"] == "Canon"


def test_hostile_and_broken_xmp_is_refused_without_harm() -> None:
    bomb = b'<!DOCTYPE x [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&b;</x:xmpmeta>'
    external = b'<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x:xmpmeta xmlns:x="adobe:ns:meta/">&e;</x:xmpmeta>'
    for packet in (bomb, external, b"<x:xmpmeta><rdf:RDF>"):
        with pytest.raises(XmpError):
            parse_xmp(packet)
    meta = read_metadata(MetadataBlocks(xmp=(bomb,)))
    assert meta.xmp == {} and meta.problems and meta.xmp_packets == 0
    nested = "".join(f'<p:a{i} rdf:parseType="Resource">' for i in range(40)) + "x" + "".join(f"</p:a{i}>" for i in reversed(range(40)))
    deep = parse_xmp(f'{_RDF}<rdf:Description xmlns:p="urn:p">{nested}</rdf:Description></rdf:RDF>'.encode())
    assert deep and max(key.count("/") for key in deep) <= 17


def test_every_fuzz_corpus_file_that_decodes_yields_metadata() -> None:
    for sample in dataset("metadata_fuzz_corpus"):
        try:
            image = load_image(sample.path.read_bytes())
        except ForensicsError:
            continue
        extract_metadata(image)


def test_metadata_is_parsed_once_immutable_and_shared(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[MetadataBlocks] = []
    parse = forensics.image.read_metadata

    def counted(blocks: MetadataBlocks, tiff_file: bytes | None = None) -> FileMetadata:
        calls.append(blocks)
        return parse(blocks, tiff_file)

    monkeypatch.setattr(forensics.image, "read_metadata", counted)
    image = _reference("dresden_natural", sorted(s.path.name for s in dataset("dresden_natural"))[0])
    findings = run_methods(image, [MetadataMethod(), EncoderMethod(), AiGenerated()])
    assert all(f.status is Status.OK for f in findings) and len(calls) == 1
    assert image.metadata is image.metadata
    with pytest.raises(TypeError):
        image.metadata.exif["Exif.Image.Make"] = "forged"  # type: ignore[index]
    copy = pickle.loads(pickle.dumps(image.metadata))
    assert copy == image.metadata


def test_md5_is_computed_once_for_report_and_metadata(astronaut: np.ndarray) -> None:
    image = load_image(jpeg_bytes(astronaut))
    assert file_info(image)["md5"] == extract_metadata(image)["hashes"]["md5"] == image.__dict__["md5"]


def test_files_without_metadata_read_as_empty(astronaut: np.ndarray) -> None:
    meta = load_image(jpeg_bytes(astronaut)).metadata
    assert (dict(meta.exif), dict(meta.iptc), dict(meta.xmp), meta.reader, meta.thumbnail) == ({}, {}, {}, "none", None)
