"""A minimal patient-portal backend on the standard library.

    python examples/portal_server.py STUDY_DIR --recipient CERT.pem --sign-key KEY.pem \
        --sign-cert CERT.pem --key RECIPIENT.key --cert RECIPIENT.pem --trust CA.pem [--port 8080]

GET  /download   streams `dicompack.pack(STUDY_DIR)` as a secure package
                 (application/pkcs7-mime), chunk by chunk, never held in memory.
POST /upload     accepts a secure package and `unpack`s it (verify first,
                 then restore) into ./received/<n>; answers with the JSON report.

The receive policy is the library's: the portal holds a key and a trust
anchor, so every upload must be encrypted for it and signed by a trusted
signer; a plain ZIP, an unsigned or untrusted package is refused.

Binds to 127.0.0.1 only.  Every failure becomes a clean HTTP answer: the
library raises only `dicompack.DicompackError` subclasses.  A malformed
upload (exit codes below 6) gets 400 with the error's one-line message; a
rejected one (decryption, signature, trust, unsigned or plain: 6 and up)
gets one generic 403 body, so an uploader learns nothing about our keys or
trust anchors: the details go to the server log (stderr) only.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dicompack
from dicompack import keys
from dicompack.container.cms import CertRecipient, Signer

_COUNTER = itertools.count(1)
REJECTED = {"error": "package rejected"}


class _ChunkedWriter:
    """A non-seekable binary stream over HTTP/1.1 chunked encoding."""

    def __init__(self, wfile):
        self.wfile = wfile

    def write(self, data) -> int:
        if data:
            self.wfile.write(b"%x\r\n" % len(data) + bytes(data) + b"\r\n")
        return len(data)

    def flush(self) -> None:
        self.wfile.flush()

    def close(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def make_handler(study: Path, pack_options: dicompack.PackOptions, receive_options: dicompack.ReceiveOptions,
                 inbox: Path):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:   # quiet: tests read stdout
            pass

        def _json(self, code: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if self.path != "/download":
                return self._json(404, {"error": "not found"})
            self.send_response(200)
            self.send_header("Content-Type", "application/pkcs7-mime; smime-type=enveloped-data")
            self.send_header("Content-Disposition", 'attachment; filename="DICOM.p7m"')
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            out = _ChunkedWriter(self.wfile)
            try:
                dicompack.pack([study], out, pack_options)
            except dicompack.DicompackError:
                # Headers are sent: end the stream without the final chunk so
                # the client sees a broken download, never a short "valid" one.
                self.close_connection = True
                return
            out.close()

        def do_POST(self) -> None:
            if self.path != "/upload":
                return self._json(404, {"error": "not found"})
            length = int(self.headers.get("Content-Length", "0"))
            with tempfile.SpooledTemporaryFile(max_size=8 << 20) as body:
                while length:
                    chunk = self.rfile.read(min(length, 1 << 20))
                    if not chunk:
                        return self._json(400, {"error": "upload cut short"})
                    body.write(chunk)
                    length -= len(chunk)
                body.seek(0)
                target = inbox / f"upload-{next(_COUNTER):04d}"
                try:
                    done = dicompack.unpack(body, target, receive_options)
                except dicompack.DicompackError as err:
                    return self._refuse(err)
            self._json(200, {"verify": done.verify, "policy": done.policy, "restored": done.output,
                             "files": done.files})

        def _refuse(self, err: dicompack.DicompackError) -> None:
            print(f"portal: upload refused: {type(err).__name__} (exit {err.exit_code}): {err}",
                  file=sys.stderr, flush=True)
            if err.exit_code >= 6:
                return self._json(403, REJECTED)
            return self._json(400, err.to_dict())

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("study", type=Path)
    parser.add_argument("--recipient", type=Path, required=True)
    parser.add_argument("--sign-key", type=Path, required=True)
    parser.add_argument("--sign-cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True, help="our key, to open uploads")
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--trust", type=Path, required=True)
    parser.add_argument("--inbox", type=Path, default=Path("received"))
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    signer = Signer(keys.load_private_key(args.sign_key), keys.load_certificate(args.sign_cert))
    pack_options = dicompack.PackOptions(format="secure", signer=signer,
                                         recipients=(CertRecipient(keys.load_certificate(args.recipient)),))
    receive_options = dicompack.ReceiveOptions(key=keys.load_private_key(args.key),
                                               cert=keys.load_certificate(args.cert),
                                               trust=tuple(keys.load_certificates(args.trust)))
    args.inbox.mkdir(parents=True, exist_ok=True)
    server = ThreadingHTTPServer(("127.0.0.1", args.port),
                                 make_handler(args.study, pack_options, receive_options, args.inbox))
    print(f"listening on http://127.0.0.1:{server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    threading.current_thread().name = "portal"
    main()
