"""Re-identification support (PS3.3 C.12.1.1.4, PS3.15 E): the original
values of everything de-identification changed or removed travel inside the
instance, in the Encrypted Attributes Sequence, as a CMS EnvelopedData that
only the re-identification recipients can open."""
from __future__ import annotations

from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence

from ..errors import InvalidInputError

EXPLICIT_LE = "1.2.840.10008.1.2.1"
# The list of tags de-identification added rides inside the encrypted
# payload, under our own private creator (never visible without the key).
_CREATOR, _ADDED = "DICOMPACK REID", 0x01


def seal(ds: Dataset, originals: Dataset, added: list[int], recipients: list) -> None:
    """Add the Encrypted Attributes Sequence holding ``originals``."""
    from ..container.cms import envelope_bytes
    payload = Dataset()
    charset = originals.get("SpecificCharacterSet") or ds.get("SpecificCharacterSet")
    if charset:
        # Names are encoded in the instance's character set, not ASCII.
        payload.SpecificCharacterSet = charset
    payload.ModifiedAttributesSequence = Sequence([originals])
    block = payload.private_block(0x0009, _CREATOR, create=True)
    block.add_new(_ADDED, "UL", list(added) or [0])
    buf = DicomBytesIO()
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, payload)
    item = Dataset()
    item.EncryptedContentTransferSyntaxUID = EXPLICIT_LE
    item.EncryptedContent = envelope_bytes(buf.getvalue(), recipients)
    ds.EncryptedAttributesSequence = Sequence([item])


def restore(ds: Dataset, *, key=None, cert=None, password=None, where: str = "") -> int:
    """Put the original values back; return how many elements were restored."""
    from ..container.cms import open_envelope_bytes
    if "EncryptedAttributesSequence" not in ds:
        raise InvalidInputError("no Encrypted Attributes Sequence: not de-identified with --reid-recipient",
                                where=where)
    item = ds.EncryptedAttributesSequence[0]
    plain = open_envelope_bytes(bytes(item.EncryptedContent), key=key, cert=cert, password=password)
    payload = read_dataset(DicomBytesIO(plain), is_implicit_VR=False, is_little_endian=True)
    originals = payload.ModifiedAttributesSequence[0]
    block = payload.private_block(0x0009, _CREATOR)
    added = [t for t in (block[_ADDED].value if isinstance(block[_ADDED].value, list) else [block[_ADDED].value]) if t]
    for tag in added:
        if tag in ds:
            del ds[tag]
    for elem in originals:
        ds[elem.tag] = elem
    del ds.EncryptedAttributesSequence
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return len(originals)
