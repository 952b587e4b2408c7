"""Every distribution ``scripts/bootstrap test`` installs is listed in ``docs/licences.md``, and the
licence its own metadata declares lets the project stay Apache-2.0.

The distributions are those the project requires: ``pyproject.toml``'s dependencies and its
``service`` and ``test`` extras, followed through each installed distribution's
``Requires-Dist`` (markers evaluated for this interpreter and the extras asked for). A
distribution's licence is read from its metadata (``importlib.metadata``), the first of:

1. ``License-Expression``, the SPDX expression of PEP 639;
2. ``License``, when it is one line that is an SPDX expression or a name in :data:`ALIASES`;
3. the ``License ::`` trove classifiers, every one of which must then be allowed;
4. ``License`` holding a whole licence text, recognised as MIT or BSD by its clauses.

A licence is allowed when it is in :data:`ALLOWED` (permissive licences, weak copyleft for
libraries used unmodified: MPL-2.0, LGPL); an SPDX ``OR`` needs one allowed side, ``AND`` both.
Metadata describes the Python distribution, not the native libraries its wheels bundle:
:data:`REFUSED` names distributions refused for what they bundle. The document's licence
column shows what this reading gave for the versions installed when it was written; a new
release may declare its licence in another field, so only the listing itself is compared.
"""

import re
import tomllib
from collections.abc import Iterable
from email.message import Message
from importlib import metadata

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

LICENCES_DOC = REPO / "docs" / "licences.md"

#: Licences compatible with distributing the project under Apache-2.0 (SPDX ids; ``BSD``,
#: ``Apache`` and ``LGPL`` as classifiers name them, without a version).
ALLOWED = frozenset(
    {
        "0BSD", "Apache", "Apache-2.0", "BSD", "BSD-2-Clause", "BSD-3-Clause", "BSL-1.0", "CC0-1.0", "CNRI-Python", "HPND", "ISC",
        "LGPL", "LGPL-2.1-only", "LGPL-2.1-or-later", "LGPL-3.0-only", "LGPL-3.0-or-later", "MIT", "MIT-0", "MIT-CMU",
        "MPL-2.0", "PSF-2.0", "Python-2.0", "Unlicense", "Zlib",
    }
)
#: Distributions whose metadata licence is allowed but whose binary wheels bundle what is not.
REFUSED = {"pillow-heif": "its wheels bundle the x265 encoder (GPL-2.0)", "pyexiv2": "GPL-3.0 (and exiv2, GPL-2.0)"}
#: One-line ``License`` values that are not SPDX expressions, and their SPDX id.
ALIASES = {
    "2-clause BSD License": "BSD-2-Clause",
    "3-Clause BSD License": "BSD-3-Clause",
    "Apache 2.0": "Apache-2.0",
    "Apache License 2.0": "Apache-2.0",
    "BSD": "BSD",
    "LGPL with exceptions": "LGPL",
    "MIT License": "MIT",
    "MIT license": "MIT",
    "New BSD": "BSD-3-Clause",
    "PSFL": "PSF-2.0",
}
#: ``License ::`` classifiers (their last part) and their SPDX id; classifiers that name no licence map to None.
CLASSIFIERS = {
    "Apache Software License": "Apache",
    "BSD License": "BSD",
    "DFSG approved": None,
    "GNU General Public License v2 (GPLv2)": "GPL-2.0",
    "GNU General Public License v3 (GPLv3)": "GPL-3.0",
    "GNU Lesser General Public License v3 (LGPLv3)": "LGPL-3.0-only",
    "GNU Library or Lesser General Public License (LGPL)": "LGPL",
    "ISC License (ISCL)": "ISC",
    "MIT License": "MIT",
    "Mozilla Public License 2.0 (MPL 2.0)": "MPL-2.0",
    "Python Software Foundation License": "PSF-2.0",
    "The Unlicense (Unlicense)": "Unlicense",
}
_SPDX_TOKEN = re.compile(r"\(|\)|[A-Za-z0-9.+-]+")
_OPERATORS = {"AND", "OR", "WITH"}


def licence_of(meta: Message) -> tuple[str, str]:
    """(licence, where it was read) for one distribution's metadata; ("", "nothing") when none is declared."""
    if expression := (meta.get("License-Expression") or "").strip():
        return expression, "License-Expression"
    text = (meta.get("License") or "").strip()
    if text and "\n" not in text:
        if text in ALIASES:
            return ALIASES[text], "License"
        if _is_expression(text):
            return text, "License"
    named = [CLASSIFIERS.get(c.split("::")[-1].strip(), c) for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    if named := [n for n in named if n]:
        return "; ".join(dict.fromkeys(named)), "classifiers"
    if "Redistribution and use in source and binary forms" in text:
        return ("BSD-3-Clause" if "endorse or promote" in text else "BSD-2-Clause"), "License text"
    if "Permission is hereby granted, free of charge" in text:
        return "MIT", "License text"
    return "", "nothing"


def allowed(licence: str, source: str) -> bool:
    """Whether ``licence`` (as :func:`licence_of` read it from ``source``) is in :data:`ALLOWED`."""
    if source == "classifiers":
        return all(name in ALLOWED for name in licence.split("; "))
    tokens = _SPDX_TOKEN.findall(licence)
    value, rest = _or(tokens) if tokens else (False, [])
    return value and not rest


def _is_expression(text: str) -> bool:
    return all(t in _OPERATORS or t in "()" or t in ALLOWED or re.fullmatch(r"[A-Za-z]+-[0-9.]+[A-Za-z.+-]*", t) for t in _SPDX_TOKEN.findall(text))


def _or(tokens: list[str]) -> tuple[bool, list[str]]:
    value, tokens = _and(tokens)
    while tokens[:1] == ["OR"]:
        right, tokens = _and(tokens[1:])
        value = value or right
    return value, tokens


def _and(tokens: list[str]) -> tuple[bool, list[str]]:
    value, tokens = _term(tokens)
    while tokens[:1] == ["AND"]:
        right, tokens = _term(tokens[1:])
        value = value and right
    return value, tokens


def _term(tokens: list[str]) -> tuple[bool, list[str]]:
    if tokens[:1] == ["("]:
        value, tokens = _or(tokens[1:])
        return value, tokens[1:] if tokens[:1] == [")"] else ["unbalanced"]
    if not tokens or tokens[0] in _OPERATORS or tokens[0] == ")":
        return False, ["malformed"]
    value, tokens = tokens[0] in ALLOWED, tokens[1:]
    if tokens[:1] == ["WITH"]:  # an exception only ever widens what the licence allows
        tokens = tokens[2:]
    return value, tokens


def _project_requirements(extra: str | None) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    listed = project["dependencies"] if extra is None else project["optional-dependencies"][extra]
    out: list[Requirement] = []
    for requirement in map(Requirement, listed):
        if canonicalize_name(requirement.name) == canonicalize_name(project["name"]):
            out += [r for own in requirement.extras for r in _project_requirements(own)]
        else:
            out.append(requirement)
    return out


def _closure(roots: Iterable[Requirement]) -> set[str]:
    """The distributions ``roots`` pull in, by canonical name; a missing one fails the test."""
    extras_of: dict[str, set[str]] = {}
    todo = list(roots)
    while todo:
        requirement = todo.pop()
        name = canonicalize_name(requirement.name)
        if name in extras_of and set(requirement.extras) <= extras_of[name]:
            continue
        extras_of[name] = extras_of.get(name, set()) | set(requirement.extras)
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pytest.fail(f"{name} is required but not installed: run scripts/bootstrap test")
        for line in dist.requires or []:
            child = Requirement(line)
            if child.marker is None or any(child.marker.evaluate({"extra": e}) for e in extras_of[name] | {""}):
                todo.append(child)
    return set(extras_of)


def installed_groups() -> dict[str, set[str]]:
    """The installed distributions by the group that first needs them: runtime, service, test."""
    runtime = _closure(_project_requirements(None))
    service = _closure(_project_requirements("service")) - runtime
    return {"runtime": runtime, "service": service, "test": _closure(_project_requirements("test")) - runtime - service}


def documented(text: str) -> set[str]:
    """The distributions docs/licences.md lists (first column of its tables, in backquotes)."""
    return {canonicalize_name(row.group(1)) for row in re.finditer(r"^\| `([^`]+)` \|", text, re.MULTILINE)}


def test_every_installed_distribution_is_listed() -> None:
    listed = documented(LICENCES_DOC.read_text())
    missing = [
        f"{group}: | `{name}` | {' | '.join(licence_of(metadata.metadata(name)))} |"
        for group, names in installed_groups().items()
        for name in sorted(names - listed)
    ]
    assert not missing, "docs/licences.md lacks these rows:\n" + "\n".join(missing)


def test_every_installed_distribution_has_an_allowed_licence() -> None:
    refused = []
    for group, names in installed_groups().items():
        for name in sorted(names):
            licence, source = licence_of(metadata.metadata(name))
            if name in REFUSED or not allowed(licence, source):
                why = REFUSED.get(name) or f"{licence or 'no licence'} ({source})"
                refused.append(f"{group}: {name}: {why}")
    assert not refused, refused


def _meta(**fields: str | list[str]) -> Message:
    meta = Message()
    for key, value in fields.items():
        for item in value if isinstance(value, list) else [value]:
            meta[key.replace("_", "-")] = item
    return meta


@pytest.mark.parametrize(
    ("fields", "expected", "ok"),
    [
        ({"License_Expression": "MIT AND (Apache-2.0 OR BSD-2-Clause)"}, ("MIT AND (Apache-2.0 OR BSD-2-Clause)", "License-Expression"), True),
        ({"License_Expression": "GPL-3.0-or-later OR MIT"}, ("GPL-3.0-or-later OR MIT", "License-Expression"), True),
        ({"License_Expression": "GPL-3.0-or-later AND MIT"}, ("GPL-3.0-or-later AND MIT", "License-Expression"), False),
        ({"License": "GPLv3"}, ("", "nothing"), False),  # pyexiv2's metadata
        ({"License": "GPL-2.0-only"}, ("GPL-2.0-only", "License"), False),
        ({"License": "LGPL with exceptions", "Classifier": "License :: OSI Approved :: GNU Library or Lesser General Public License (LGPL)"}, ("LGPL", "License"), True),
        ({"License": "Dual License", "Classifier": ["License :: OSI Approved :: BSD License", "License :: OSI Approved :: Apache Software License"]}, ("BSD; Apache", "classifiers"), True),
        ({"Classifier": ["License :: OSI Approved :: MIT License", "License :: OSI Approved :: GNU General Public License v3 (GPLv3)"]}, ("MIT; GPL-3.0", "classifiers"), False),
        ({"License": "Copyright (c) 2002 Someone\nRedistribution and use in source and binary forms ... endorse or promote ..."}, ("BSD-3-Clause", "License text"), True),
        ({}, ("", "nothing"), False),
    ],
)
def test_licence_reading_refuses_copyleft_and_the_undeclared(fields: dict[str, str | list[str]], expected: tuple[str, str], ok: bool) -> None:
    read = licence_of(_meta(**fields))
    assert read == expected and allowed(*read) is ok

