"""The tables in `amqp_core.spec` say exactly what the AMQP 1.0 spec XML says, type by type.

The XML is Debian's `amqp-specs` package (CI installs it). Without it every test here
fails: the tables are only trustworthy while this check runs.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from amqp_core import spec

SPEC_DIR = Path("/usr/share/amqp/specs/1-0")
SPEC_FILES = ("types", "transport", "messaging", "security", "transactions")
NAMESPACE = "{http://www.amqp.org/schema/amqp.xsd}"
MISSING = (
    f"{SPEC_DIR} is missing: install the Debian package amqp-specs "
    "(apt-get install amqp-specs), which holds the AMQP 1.0 spec XML these tests read"
)


def _elements(tag: str) -> list[ET.Element]:
    if not SPEC_DIR.is_dir():
        return []
    found: list[ET.Element] = []
    for name in SPEC_FILES:
        root = ET.parse(SPEC_DIR / f"{name}.bare.xml").getroot()
        found.extend(root.iter(NAMESPACE + tag))
    return found


XML_TYPES = _elements("type")
XML_DEFINITIONS = _elements("definition")


def _params(elements: list[ET.Element], kind: str | None = None) -> list[Any]:
    """One test case per element; a single failing case when the XML is not installed."""
    if not SPEC_DIR.is_dir():
        return [pytest.param(None, id="amqp-specs-not-installed")]
    return [
        pytest.param(element, id=element.get("name"))
        for element in elements
        if kind is None or element.get("class") == kind
    ]


def _present(element: ET.Element | None) -> ET.Element:
    if element is None:
        pytest.fail(MISSING)
    return element


def _provides(element: ET.Element) -> tuple[str, ...]:
    text = element.get("provides")
    return tuple(part.strip() for part in text.split(",")) if text else ()


def _descriptor(element: ET.Element) -> tuple[str, int] | None:
    descriptor = element.find(NAMESPACE + "descriptor")
    if descriptor is None:
        return None
    high, low = descriptor.get("code", "").split(":")
    return descriptor.get("name", ""), int(high, 16) << 32 | int(low, 16)


def _as_xml_text(value: Any) -> str | None:
    """A table value written as the XML writes it (False -> "false", 512 -> "512")."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _flag(element: ET.Element, name: str) -> bool:
    return element.get(name, "false") == "true"


def test_spec_xml_is_installed() -> None:
    assert SPEC_DIR.is_dir(), MISSING
    assert XML_TYPES, f"no <type> elements found under {SPEC_DIR}"


def test_every_table_type_is_in_the_xml() -> None:
    _present(XML_TYPES[0] if XML_TYPES else None)
    xml_names = {element.get("name") for element in XML_TYPES}
    ours = {*spec.PRIMITIVES, *spec.COMPOSITES, *spec.RESTRICTED}
    assert ours - xml_names == set()
    assert set(spec.DEFINITIONS) - {element.get("name") for element in XML_DEFINITIONS} == set()
    assert {element.get("class") for element in XML_TYPES} == {
        "primitive",
        "composite",
        "restricted",
    }


@pytest.mark.parametrize("element", _params(XML_TYPES, "primitive"))
def test_primitive_type(element: ET.Element | None) -> None:
    element = _present(element)
    name = element.get("name", "")
    assert name in spec.PRIMITIVES, f"primitive type {name} is missing from spec.ENCODINGS"
    xml_encodings = [
        (
            encoding.get("name"),
            int(encoding.get("code", ""), 16),
            encoding.get("category"),
            int(encoding.get("width", "")),
        )
        for encoding in element.iter(NAMESPACE + "encoding")
    ]
    ours = [(e.name, e.code, e.category, e.width) for e in spec.PRIMITIVES[name]]
    assert ours == xml_encodings


@pytest.mark.parametrize("element", _params(XML_TYPES, "restricted"))
def test_restricted_type(element: ET.Element | None) -> None:
    element = _present(element)
    name = element.get("name", "")
    assert name in spec.RESTRICTED, f"restricted type {name} is missing from the spec tables"
    entry = spec.RESTRICTED[name]
    assert entry.source == element.get("source")
    assert entry.provides == _provides(element)
    ours = None if entry.descriptor is None else (entry.descriptor, entry.code)
    assert ours == _descriptor(element)
    xml_choices = [
        (choice.get("name"), choice.get("value")) for choice in element.iter(NAMESPACE + "choice")
    ]
    assert [(key, _as_xml_text(value)) for key, value in entry.choices.items()] == xml_choices


@pytest.mark.parametrize("element", _params(XML_TYPES, "composite"))
def test_composite_type(element: ET.Element | None) -> None:
    element = _present(element)
    name = element.get("name", "")
    assert name in spec.COMPOSITES, f"composite type {name} is missing from the spec tables"
    entry = spec.COMPOSITES[name]
    assert entry.source == element.get("source")
    assert entry.provides == _provides(element)
    assert (entry.descriptor, entry.code) == _descriptor(element)
    xml_fields = [
        (
            field.get("name"),
            field.get("type"),
            _flag(field, "mandatory"),
            _flag(field, "multiple"),
            field.get("requires"),
            field.get("default"),
        )
        for field in element.iter(NAMESPACE + "field")
    ]
    ours = [
        (f.name, f.type, f.mandatory, f.multiple, f.requires, _as_xml_text(f.default))
        for f in entry.fields
    ]
    assert ours == xml_fields


@pytest.mark.parametrize("element", _params(XML_DEFINITIONS))
def test_definition(element: ET.Element | None) -> None:
    element = _present(element)
    name = element.get("name", "")
    assert name in spec.DEFINITIONS, f"definition {name} is missing from the spec tables"
    assert _as_xml_text(spec.DEFINITIONS[name]) == element.get("value")
