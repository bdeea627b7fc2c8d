"""Hash and content-cipher tables, and the streaming content encryptor and
decryptor (AES-CBC, AES-GCM, 3DES-CBC for old senders)."""
from __future__ import annotations

import os
from collections.abc import Callable

from asn1crypto import core
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives import padding as sympad
from cryptography.hazmat.primitives.ciphers import (
    AEADDecryptionContext,
    AEADEncryptionContext,
    Cipher,
    CipherContext,
    algorithms,
    modes,
)

from dicompack.container.cms import asn1 as A
from dicompack.errors import DecryptionError, PackageInvalidError, SignatureInvalidError

try:  # cryptography >= 43 moved 3DES to "decrepit"
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover
    # cryptography 42: the same class, still in its old place (mypy sees the new one).
    TripleDES = algorithms.TripleDES  # type: ignore[misc]


HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "sha1": hashes.SHA1, "sha224": hashes.SHA224, "sha256": hashes.SHA256,
    "sha384": hashes.SHA384, "sha512": hashes.SHA512}
WRITE_DIGESTS = ("sha256", "sha384", "sha512")

# name -> (asn1 name, key size, block size, mode)
CIPHERS = {
    "aes128_cbc": (16, 16, "cbc"), "aes192_cbc": (24, 16, "cbc"), "aes256_cbc": (32, 16, "cbc"),
    "tripledes_3key": (24, 8, "cbc"),
    "aes128_gcm": (16, 16, "gcm"), "aes192_gcm": (24, 16, "gcm"), "aes256_gcm": (32, 16, "gcm"),
}
CIPHER_LABELS = {"aes128_cbc": "aes-128-cbc", "aes192_cbc": "aes-192-cbc",
                 "aes256_cbc": "aes-256-cbc", "tripledes_3key": "des-ede3-cbc",
                 "aes128_gcm": "aes-128-gcm", "aes192_gcm": "aes-192-gcm",
                 "aes256_gcm": "aes-256-gcm"}


def block_cipher(name: str, key: bytes):
    return TripleDES(key) if name == "tripledes_3key" else algorithms.AES(key)


def hash_obj(name: str):
    try:
        return hashes.Hash(HASHES[name]())
    except KeyError:
        raise PackageInvalidError(f"unsupported digest algorithm {name}") from None


# ------------------------------------------------------------ content ciphers

class ContentEncryptor:
    def __init__(self, name: str, key: bytes):
        self.name = name
        _, block, mode = CIPHERS[name]
        self._enc: CipherContext
        self._gcm: AEADEncryptionContext | None = None
        self._pad: sympad.PaddingContext | None = None
        if mode == "gcm":
            self.iv = os.urandom(12)
            self.params = A.EncryptionAlgorithm({"algorithm": name, "parameters": A.GcmParams(
                {"aes_nonce": self.iv, "aes_icvlen": 16})})
            self._gcm = Cipher(algorithms.AES(key), modes.GCM(self.iv)).encryptor()
            self._enc = self._gcm
        else:
            self.iv = os.urandom(block)
            self.params = A.EncryptionAlgorithm({"algorithm": name,
                                                 "parameters": core.OctetString(self.iv)})
            self._enc = Cipher(block_cipher(name, key), modes.CBC(self.iv)).encryptor()
            self._pad = sympad.PKCS7(block * 8).padder()
        self.tag = b""          # GCM's, once finalized

    def update(self, data: bytes) -> bytes:
        if self._pad is not None:
            data = self._pad.update(data)
        return self._enc.update(data)

    def finalize(self) -> bytes:
        out = b""
        if self._pad is not None:
            out = self._enc.update(self._pad.finalize())
        out += self._enc.finalize()
        if self._gcm is not None:
            self.tag = self._gcm.tag
        return out


class ContentDecryptor:
    """Streaming decryption; ``finalize`` raises SignatureInvalidError when the
    CBC padding or the GCM tag is wrong (the ciphertext tail was altered)."""

    def __init__(self, alg: A.EncryptionAlgorithm, key: bytes, where: str):
        name = alg["algorithm"].native
        if name not in CIPHERS:
            raise PackageInvalidError(f"unsupported content-encryption algorithm {name}",
                                      where=where)
        keylen, block, mode = CIPHERS[name]
        self.name = name
        self.keylen = keylen
        self.icvlen = 0             # GCM's tag length, from the parameters
        self._dec: CipherContext
        self._gcm: AEADDecryptionContext | None = None
        self._unpad: sympad.PaddingContext | None = None
        if len(key) != keylen:
            raise DecryptionError("content-encryption key has the wrong length: "
                                  "wrong key or not a recipient")
        try:
            params = alg["parameters"]
            if mode == "gcm" and not isinstance(params, A.GcmParams):
                params = A.GcmParams.load(params.dump())
            elif mode != "gcm":
                params = params.native
            if mode == "gcm":
                iv = params["aes_nonce"].native
                self.icvlen = params["aes_icvlen"].native
            else:
                iv = params
        except Exception:  # noqa: BLE001
            raise PackageInvalidError("malformed content-encryption parameters",
                                      where=where) from None
        if mode == "gcm":
            # RFC 5084 allows other sizes, but a short nonce repeats and a short
            # tag is forgeable; 12 and 16 are what we and OpenSSL write.
            if not isinstance(iv, bytes) or len(iv) != 12 or self.icvlen != 16:
                raise PackageInvalidError("GCM parameters refused: the nonce must be 12 bytes and "
                                          "the tag 16 bytes", where=where)
            self._gcm = Cipher(algorithms.AES(key), modes.GCM(iv)).decryptor()
            self._dec = self._gcm
        else:
            if not isinstance(iv, bytes) or len(iv) != block:
                raise PackageInvalidError("bad CBC IV", where=where)
            self._dec = Cipher(block_cipher(name, key), modes.CBC(iv)).decryptor()
            self._unpad = sympad.PKCS7(block * 8).unpadder()
        self.aead = mode == "gcm"
        self.block = block
        self._seen = 0

    def update(self, data: bytes) -> bytes:
        self._seen += len(data)
        out = self._dec.update(data)
        if self._unpad is not None:
            out = self._unpad.update(out)
        return out

    def finalize(self, tag: bytes | None = None) -> bytes:
        try:
            if self._gcm is not None:
                if tag is None or len(tag) != self.icvlen:
                    raise SignatureInvalidError("authentication tag missing or of the wrong "
                                                "length", where="AuthEnvelopedData.mac")
                return self._gcm.finalize_with_tag(tag)
            if self._seen % self.block or not self._seen:
                raise SignatureInvalidError("ciphertext length is not a multiple of the "
                                            "block size (truncated or altered)",
                                            where="EncryptedContentInfo.encryptedContent")
            out = self._dec.finalize()
            assert self._unpad is not None      # CBC: set with the cipher
            return self._unpad.update(out) + self._unpad.finalize()
        except InvalidTag:
            raise SignatureInvalidError("authentication tag mismatch: the encrypted content "
                                        "was altered", where="AuthEnvelopedData.mac") from None
        except ValueError:
            raise SignatureInvalidError("bad padding at the end of the encrypted content "
                                        "(altered or truncated ciphertext)",
                                        where="EncryptedContentInfo.encryptedContent") from None
