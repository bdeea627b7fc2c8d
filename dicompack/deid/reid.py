"""Re-identification support (PS3.3 C.12.1.1.4, PS3.15 E): the original
values of everything de-identification changed or removed travel inside the
instance, in the Encrypted Attributes Sequence, as a CMS AuthEnvelopedData
(AES-256-GCM) that only the re-identification recipients can open.

Authentication alone is not enough: the recipient's certificate is public,
so anybody can seal a fresh, perfectly valid payload for it.  A payload is
therefore also bound to its instance (the de-identified SOP Instance UID is
sealed with it) and may only hold what de-identification itself changes
(``restorable``): never Pixel Data, the pixel description, the File Meta
Information or the SOP Class.  Only a signed package proves who sealed it.
"""
from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from pydicom import config, dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from dicompack import standard
from dicompack.container.cms import NOT_AUTHENTIC, CertRecipient, envelope_bytes, open_envelope_bytes
from dicompack.deid.table import COMBINED, row_for
from dicompack.errors import DicompackError, InvalidInputError, SignatureInvalidError

# The list of tags de-identification added and the instance the payload
# belongs to ride inside the encrypted payload, under our own private
# creator (never visible without the key).
_CREATOR, _ADDED, _BOUND = "DICOMPACK REID", 0x01, 0x02

ENCRYPTED_ATTRIBUTES = 0x04000500
MEDIA_STORAGE_SOP_INSTANCE_UID = 0x00020003
SOP_CLASS_UID = 0x00080016
# Elements engine.py adds (pseudonym, PS3.15 E.1.1 marks): the only ones a
# payload may ask to delete.
ADDED_BY_DEID = frozenset({
    0x00100010, 0x00100020,              # Patient's Name, Patient ID (when the original had none)
    0x00120062, 0x00120063, 0x00120064,  # Patient Identity Removed, De-identification Method (+ Code Sequence)
    0x00280303,                          # Longitudinal Temporal Information Modified
})
# Groups a payload may never write, whatever Table E.1-1 says: File Meta,
# the pixel description, Curve Data, Overlay Data and Pixel Data (a forged
# payload must not be able to change what the image shows).
_NEVER_GROUPS = (0x0002, 0x0028)
_NEVER_MASKED = ((0xFF000000, 0x50000000), (0xFF00FFFF, 0x60003000), (0xFFFF0000, 0x7FE00000))
# Sequences that draw on the image (a presentation state's graphics and
# text): restoring them would change what the image shows, like Pixel Data.
_NEVER_SEQUENCES = frozenset({0x00700001})   # Graphic Annotation Sequence
_WHOLESALE = {"X", "Z", "D"}             # actions that replace or remove a value as a whole
_MAX_DEPTH = 32


def _label(tag: int) -> str:
    name = keyword_for_tag(tag) if not (tag >> 16) % 2 else "private"
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})" + (f" {name}" if name else "")


def _never(tag: int) -> bool:
    if tag == 0x00280303:                # a CS flag engine.py sets, not pixel description
        return False
    return (tag >> 16 in _NEVER_GROUPS or tag in (ENCRYPTED_ATTRIBUTES, SOP_CLASS_UID)
            or tag in _NEVER_SEQUENCES or any(tag & mask == value for mask, value in _NEVER_MASKED))


def _reserved(tag: int) -> bool:
    return (tag >> 16) in (0x0001, 0x0003, 0x0005, 0x0007)


def _nothing_never_inside(elem, depth: int) -> bool:
    """A sequence restored as a whole (or a private one) brings back every
    element of its items: none of them, at any depth, may be one the
    top-level rules forbid (an Icon Image Sequence carries its own Pixel
    Data and pixel description)."""
    if elem is None or getattr(elem, "VR", None) != "SQ":
        return True
    if depth >= _MAX_DEPTH:
        return False
    for item in elem.value:
        for inner in item:
            tag = int(inner.tag)
            if _never(tag) or _reserved(tag) or not _nothing_never_inside(inner, depth + 1):
                return False
    return True


def _actions(row: dict) -> set[str]:
    return {COMBINED.get(v, v) for k, v in row.items() if k not in ("tag", "name")}


def _dictionary_vr(tag: int, elem) -> str:
    try:
        return dictionary_VR(tag)
    except KeyError:
        return getattr(elem, "VR", None) or "UN"


def restorable(tag: int, original, current, depth: int = 0) -> bool:
    """May a payload put ``original`` (an element, or None for "absent")
    where the instance now holds ``current``?  Mirrors engine.py: what
    Table E.1-1 acts on under any option, private elements, UIDs, person
    names and free text; a sequence de-identification keeps but walks may
    differ only inside its items, by the same rule."""
    if _never(tag) or _reserved(tag):
        return False
    if (tag >> 16) % 2:                  # private: removed unless declared safe
        return _nothing_never_inside(original, depth)
    vr = _dictionary_vr(tag, current if current is not None else original)
    row = row_for(tag)
    if row is not None:
        if _actions(row) & _WHOLESALE or vr != "SQ":
            # Replaced or removed as a whole (Other Patient IDs Sequence holds
            # identity): restorable, but its items are checked element by element.
            return _nothing_never_inside(original, depth)
        return _same_items_but(original, current, depth)
    if vr == "SQ":
        return _same_items_but(original, current, depth)
    return vr in ("UI", "PN", "LT", "ST", "UT", "UC")


def _same_items_but(original, current, depth: int) -> bool:
    """A kept sequence: same number of items, each differing only in
    elements ``restorable`` at that level."""
    if depth >= _MAX_DEPTH or original is None or current is None:
        return False
    if original.VR != "SQ" or current.VR != "SQ" or len(original.value) != len(current.value):
        return False
    for before, now in zip(original.value, current.value):
        for tag in {int(t) for t in before.keys()} | {int(t) for t in now.keys()}:
            old, new = before.get(tag), now.get(tag)
            if old != new and not restorable(tag, old, new, depth + 1):
                return False
    return True


# ---------------------------------------------------------------- sealing

def seal(ds: Dataset, originals: Dataset, added: list[int], recipients: list) -> None:
    """Add the Encrypted Attributes Sequence holding ``originals``, bound to
    the instance's (final) SOP Instance UID.  Whatever a payload may not
    restore is left out, so that our own payloads always restore."""
    payload = Dataset()
    charset = originals.get("SpecificCharacterSet") or ds.get("SpecificCharacterSet")
    if charset:
        # Names are encoded in the instance's character set, not ASCII.
        payload.SpecificCharacterSet = charset
    kept = Dataset()
    for elem in originals:
        if restorable(int(elem.tag), elem, ds.get(elem.tag)):
            kept.add(elem)
    payload.ModifiedAttributesSequence = Sequence([kept])
    block = payload.private_block(0x0009, _CREATOR, create=True)
    block.add_new(_ADDED, "UL", [t for t in added if t in ADDED_BY_DEID] or [0])
    block.add_new(_BOUND, "UI", str(ds.SOPInstanceUID))
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, payload)
    item = Dataset()
    item.EncryptedContentTransferSyntaxUID = standard.EXPLICIT_VR_LITTLE_ENDIAN
    item.EncryptedContent = envelope_bytes(buf.getvalue(), recipients)
    ds.EncryptedAttributesSequence = Sequence([item])


def seal_for_pem(ds: Dataset, originals: Dataset, added: list[int], recipient_pems: Iterable[bytes]) -> None:
    """``seal`` for recipients given as PEM certificates (picklable, as the
    transform stage hands them to its workers)."""
    seal(ds, originals, added, [CertRecipient(x509.load_pem_x509_certificate(pem)) for pem in recipient_pems])


# ---------------------------------------------------------------- restoring

@dataclass
class Sealed:
    originals: Dataset
    added: list[int]
    bound_uid: str


def restore(ds: Dataset, *, key=None, cert=None, password=None, where: str = "") -> int:
    """Put the original values back; return how many elements were restored.
    Everything is checked before ``ds`` is touched; every failure is a
    typed error naming ``where``."""
    blob = _encrypted_content(ds, where)
    plain = _open(blob, key=key, cert=cert, password=password, where=where)
    sealed = _parse(plain, where)
    _check_binding(ds, sealed, where)
    _check_policy(ds, sealed, where)
    for tag in sealed.added:
        if tag in ds:
            del ds[tag]
    for elem in sealed.originals:
        ds[elem.tag] = elem
    del ds[ENCRYPTED_ATTRIBUTES]
    # Built with validation off for this element only (setting the attribute
    # would run pydicom's value check, which warns): the UID was compared
    # with the sealed one above.
    ds.file_meta[MEDIA_STORAGE_SOP_INSTANCE_UID] = DataElement(
        MEDIA_STORAGE_SOP_INSTANCE_UID, "UI", str(ds.SOPInstanceUID), validation_mode=config.IGNORE)
    return len(sealed.originals)


def _encrypted_content(ds: Dataset, where: str) -> bytes:
    """The one item of the Encrypted Attributes Sequence, as we write it."""
    if ENCRYPTED_ATTRIBUTES not in ds:
        raise InvalidInputError("no Encrypted Attributes Sequence: not de-identified with --reid-recipient",
                                where=where)
    try:
        items = ds[ENCRYPTED_ATTRIBUTES].value
        if not isinstance(items, Sequence) or len(items) != 1:
            raise ValueError
        item = items[0]
        syntax = str(item.get("EncryptedContentTransferSyntaxUID", ""))
        blob = item["EncryptedContent"].value if "EncryptedContent" in item else None
    except Exception:  # noqa: BLE001 - any undecodable shape of the sequence
        raise InvalidInputError("Encrypted Attributes Sequence is malformed (one item with "
                                "Encrypted Content expected)", where=where) from None
    if syntax != standard.EXPLICIT_VR_LITTLE_ENDIAN:
        raise InvalidInputError("Encrypted Content Transfer Syntax UID is not Explicit VR Little Endian",
                                where=where)
    if not isinstance(blob, bytes) or not blob:
        raise InvalidInputError("Encrypted Attributes Sequence item has no Encrypted Content", where=where)
    return blob


def _open(blob: bytes, *, key, cert, password, where: str) -> bytes:
    try:
        return open_envelope_bytes(blob, key=key, cert=cert, password=password)
    except SignatureInvalidError as err:
        raise SignatureInvalidError(err.message, where=f"{where}: Encrypted Content") from None
    except DicompackError as err:
        raise type(err)(err.message, where=f"{where}: Encrypted Content") from None


def _parse(plain: bytes, where: str) -> Sealed:
    """Decode the whole payload now (pydicom decodes lazily, and a value that
    fails later would fail half-way through writing)."""
    try:
        payload = read_dataset(io.BytesIO(plain), is_implicit_VR=False, is_little_endian=True)
        _decode_all(payload)
        items = payload.ModifiedAttributesSequence
        if len(items) != 1:
            raise ValueError("one Modified Attributes Sequence item expected")
        block = payload.private_block(0x0009, _CREATOR)
        added = block[_ADDED].value
        added = [int(t) for t in ([added] if isinstance(added, int) else added) if t]
        bound = block[_BOUND].value
        if not isinstance(bound, str) or not bound:
            raise ValueError("no bound SOP Instance UID")
        return Sealed(items[0], added, bound)
    except Exception:  # noqa: BLE001 - authenticated but unusable: one answer
        raise SignatureInvalidError(NOT_AUTHENTIC, where=f"{where}: Encrypted Content") from None


def _decode_all(ds: Dataset, depth: int = 0) -> None:
    if depth > _MAX_DEPTH:
        raise ValueError("sequences nested too deep")
    for elem in ds:                      # converts raw elements (VR, charset, values)
        if elem.VR == "SQ":
            for item in elem.value:
                _decode_all(item, depth + 1)
        else:
            elem.value  # noqa: B018 - force the conversion


def _check_binding(ds: Dataset, sealed: Sealed, where: str) -> None:
    if str(ds.get("SOPInstanceUID", "")) != sealed.bound_uid:
        raise SignatureInvalidError("re-identification payload was sealed for another instance "
                                    "(moved from one instance to another?): refused", where=where)


def _check_policy(ds: Dataset, sealed: Sealed, where: str) -> None:
    """Refuse the whole instance on the first element the payload may not
    restore or delete."""
    for tag in sealed.added:
        if tag not in ADDED_BY_DEID:
            raise SignatureInvalidError(f"re-identification payload may not delete {_label(tag)}: refused",
                                        where=where)
    try:
        for elem in sealed.originals:
            tag = int(elem.tag)
            if not restorable(tag, elem, ds.get(tag)):
                raise SignatureInvalidError(
                    f"re-identification payload may not restore {_label(tag)}: refused", where=where)
    except DicompackError:
        raise
    except Exception:  # noqa: BLE001 - the instance's own elements failed to decode
        raise InvalidInputError("cannot compare the payload with the instance (undecodable element)",
                                where=where) from None


def restore_file(path, out, *, key=None, cert=None, password=None, where: str) -> int:
    """Read the instance at ``path``, restore it (see ``restore``) and write
    it to ``out``; any failure is a typed error naming ``where``."""
    try:
        ds = dcmread(path)
    except Exception:  # noqa: BLE001 - the scan accepted it, pydicom does not
        raise InvalidInputError("cannot read the instance", where=where) from None
    count = restore(ds, key=key, cert=cert, password=password, where=where)
    try:
        ds.save_as(out, enforce_file_format=True)
    except OSError:
        raise                            # storage errors stay storage errors
    except Exception:  # noqa: BLE001 - a restored value that cannot be encoded
        raise SignatureInvalidError(NOT_AUTHENTIC, where=f"{where}: Encrypted Content") from None
    return count
