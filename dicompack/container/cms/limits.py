"""Every limit a package is held to on receipt, before anything in it is
trusted (spec/threat-model.md, spec/package.md "Limits on receipt").
Limits on the embedded certificates and signers are in container/trust.py."""
from __future__ import annotations

# Work a package may ask of us before anything about it is trusted
# (spec/package.md, "Limits on receipt").  OWASP (2023) recommends 600,000
# PBKDF2-HMAC-SHA256 iterations (our default) and 1,300,000 for HMAC-SHA1;
# 5,000,000 leaves room for future raises while bounding the worst case to
# MAX_PASSWORD_ATTEMPTS x 5,000,000 iterations (about 2 s of SHA-256 here).
MAX_PBKDF2_ITERATIONS = 5_000_000
# Below this a sender chose a password hash an eavesdropper can brute-force
# cheaply; ``openssl cms -pwri_password`` (3.0) writes 2,048 iterations of
# HMAC-SHA1, readable with ``--legacy`` only (floor LEGACY_MIN_PBKDF2_ITERATIONS,
# the RFC 8018 minimum).
MIN_PBKDF2_ITERATIONS = 10_000
LEGACY_MIN_PBKDF2_ITERATIONS = 1_000
MAX_RECIPIENTS = 64            # recipient infos (each kari's recipientEncryptedKeys counted)
MAX_PASSWORD_ATTEMPTS = 4      # password recipient infos we derive a key for
# The recipientInfos are read whole before any key work (they are small:
# one RSA-4096 ktri is about 600 bytes).
MAX_RECIPIENT_INFOS_BYTES = 1 << 20

# BER framing (ber.py).
MAX_ELEMENT = 32 << 20        # largest non-content element we read into memory
# Deepest nesting of constructed elements we accept in any element handed to
# asn1crypto (which parses recursively: a 5,000-deep attribute raised
# RecursionError) and in constructed OCTET STRINGs.  Real CMS needs about 12.
MAX_DEPTH = 32
# Segments of a constructed OCTET STRING (see Reader.octets).
SMALL_SEGMENT = 256
MAX_SMALL_SEGMENTS = 65_536
