"""The SSRF rules and the ZIP expansion's guards, without services."""

import io
import ipaddress
import uuid
import zipfile
from pathlib import Path

import pytest

from service.ingest import ArchiveError, expand_zip
from service.netguard import UnsafeURL, check_url, is_public
from service.settings import Settings
from tests.conftest import png_bytes
from tests.platform_support import environment


@pytest.mark.parametrize(
    "address",
    ["127.0.0.1", "10.0.0.1", "172.16.5.4", "192.168.1.1", "169.254.169.254", "100.64.0.1", "100.100.100.200", "0.0.0.0",
     "224.0.0.1", "255.255.255.255", "168.63.129.16", "::1", "::", "fe80::1", "fc00::1", "fd00:ec2::254", "::ffff:127.0.0.1",
     "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "2002:7f00:1::1", "2001:0:4136:e378:8000:63bf:f5ff:fffe", "ff02::1"],
)
def test_non_public_addresses_and_their_ipv6_forms_are_refused(address: str) -> None:
    assert not is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"])
def test_public_addresses_are_accepted(address: str) -> None:
    assert is_public(ipaddress.ip_address(address))


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1/", "http://10.0.0.1/", "http://169.254.169.254/latest/meta-data/", "http://[::1]/",
     "http://localhost/", "http://LOCALHOST./", "http://2130706433/", "http://0x7f.1/", "http://017700000001/",
     "http://[::ffff:127.0.0.1]/", "ftp://8.8.8.8/", "file:///etc/passwd", "http://user:pw@8.8.8.8/", "http:///nohost",
     "http://8.8.8.8:99999/"],
)
def test_unsafe_urls_are_refused_before_any_connection(url: str) -> None:
    with pytest.raises(UnsafeURL):
        check_url(url)


def test_allow_list_takes_hosts_and_cidrs_and_pins_the_checked_address() -> None:
    with pytest.raises(UnsafeURL):
        check_url("http://127.0.0.2:8080/hook", ["127.0.0.3/32"])
    target = check_url("http://127.0.0.2:8080/hook?x=1", ["127.0.0.0/30"])
    assert target.url_for(target.addresses[0]) == "http://127.0.0.2:8080/hook?x=1"
    assert target.host_header == "127.0.0.2:8080"
    named = check_url("https://localhost/hook", ["localhost"])
    assert named.host_header == "localhost" and all(a.is_loopback for a in named.addresses)
    assert check_url("http://8.8.8.8/x").addresses == (ipaddress.ip_address("8.8.8.8"),)


def _zip(entries: dict[str, bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _expand(tmp_path: Path, data: bytes, **limits: int) -> list:  # type: ignore[type-arg]
    archive = tmp_path / "a.zip"
    archive.write_bytes(data)
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return expand_zip(archive, out, Settings(home=tmp_path, **limits))


def test_zip_entries_become_intakes_judged_by_content(tmp_path: Path) -> None:
    import numpy as np

    png = png_bytes(np.zeros((16, 16, 3), np.uint8))
    intakes = _expand(tmp_path, _zip({"a/b/photo.jpg": png, "notes.png": b"plain text", "dir/": b""}))
    assert [(i.filename, i.format and i.format.value, i.error_code) for i in intakes] == [
        ("photo.jpg", "png", None), ("notes.png", None, "INVALID_FORMAT")]
    assert intakes[0].path is not None and intakes[0].path.parent == tmp_path / "out" and intakes[0].path.read_bytes() == png


def test_zip_bombs_are_refused_on_the_bytes_actually_expanded(tmp_path: Path) -> None:
    bomb = _zip({"x.png": b"\x89PNG\r\n\x1a\n" + bytes(20_000_000)})
    with pytest.raises(ArchiveError, match="zip bomb"):
        _expand(tmp_path, bomb)
    many = _zip({f"{i}.png": b"\x89PNG\r\n\x1a\n" + bytes(150_000) for i in range(40)})
    with pytest.raises(ArchiveError, match="zip bomb"):
        _expand(tmp_path, many, max_archive_ratio=1000, max_request_bytes=3_000_000)
    with pytest.raises(ArchiveError, match="more than the limit"):
        _expand(tmp_path, _zip({f"{i}.png": b"x" for i in range(5)}), max_archive_entries=4)


@pytest.mark.parametrize("name", ["../x.png", "a/../../x.png", "/etc/x.png", "C:\\x.png", "..\\..\\x.png"])
def test_zip_path_tricks_are_refused(tmp_path: Path, name: str) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr(zipfile.ZipInfo(name), b"\x89PNG\r\n\x1a\n")
    with pytest.raises(ArchiveError, match="path"):
        _expand(tmp_path, buffer.getvalue())


def test_zip_symlinks_and_garbage_are_refused(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (0o120777 << 16)
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(ArchiveError, match="symbolic link"):
        _expand(tmp_path, buffer.getvalue())
    with pytest.raises(ArchiveError, match="not a readable ZIP"):
        _expand(tmp_path, b"PK\x03\x04 garbage")


def test_embedded_first_start_makes_one_key_or_takes_the_given_one(tmp_path: Path) -> None:
    from sqlalchemy import select

    from service.db import migrate, session_scope
    from service.models import Case
    from service.tenants import authenticate, ensure_first_key, list_tenants

    with environment({"FORENSICS_HOME": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path / 'f.db'}"}):
        migrate("sqlite:///" + str(tmp_path / "f.db"))
        with session_scope() as session:  # a case from before tenants existed
            session.add(Case(id=uuid.uuid4(), status="completed", image_count=0))
            session.commit()
            made = ensure_first_key(session, None)
            assert session.scalars(select(Case.tenant_id)).one() is not None  # adopted by "default"
            assert made is not None and made.startswith("fsk_")
            assert ensure_first_key(session, None) is None  # printed once: never again
            given = "my-own-key-from-the-environment-0123"
            assert ensure_first_key(session, given) == given
            assert [t.name for t in list_tenants(session)] == ["default"]
            principal = authenticate(session, given)
            assert principal is not None and principal.tenant_name == "default"
            assert authenticate(session, made) is not None and authenticate(session, made + "x") is None
