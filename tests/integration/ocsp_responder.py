#!/usr/bin/env python3
"""An OCSP responder for the tests (RFC 6960 over HTTP POST), with python3-cryptography: it
answers for the certificates a test CA issued (the `*.leaf` files beside CA.pem, read at each
request, as tests/integration/test_tls.py's Pki writes them), signed by that CA, `good` unless the
serial (hex) is listed in revoked.txt there. Run as `ocsp_responder.py CA.pem CA.key`; binds
127.0.0.1 on an OS-picked port and prints `PORT <n>`; appends a line to requests.txt there for
each request."""
import glob
import datetime
import http.server
import os
import sys

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp

CA = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
KEY = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
DIR = os.path.dirname(os.path.abspath(sys.argv[1]))
COUNT = os.path.join(DIR, "requests.txt")


def find(serial):
    for path in glob.glob(os.path.join(DIR, "*.leaf")):
        cert = x509.load_pem_x509_certificate(open(path, "rb").read())
        if cert.serial_number == serial:
            return cert
    return None


def revoked(serial):
    try:
        return serial in {int(s, 16) for s in open(os.path.join(DIR, "revoked.txt")).read().split()}
    except FileNotFoundError:
        return False


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(COUNT, "a") as f:
            f.write("1\n")
        try:
            req = ocsp.load_der_ocsp_request(body)
        except ValueError:
            der = ocsp.OCSPResponseBuilder.build_unsuccessful(
                ocsp.OCSPResponseStatus.MALFORMED_REQUEST).public_bytes(serialization.Encoding.DER)
        else:
            cert = find(req.serial_number)
            if cert is None:
                der = ocsp.OCSPResponseBuilder.build_unsuccessful(
                    ocsp.OCSPResponseStatus.UNAUTHORIZED).public_bytes(serialization.Encoding.DER)
            else:
                now = datetime.datetime.utcnow()
                bad = revoked(req.serial_number)
                b = ocsp.OCSPResponseBuilder().add_response(
                    cert=cert, issuer=CA, algorithm=req.hash_algorithm,
                    cert_status=ocsp.OCSPCertStatus.REVOKED if bad else ocsp.OCSPCertStatus.GOOD,
                    this_update=now - datetime.timedelta(minutes=1),
                    next_update=now + datetime.timedelta(hours=1),
                    revocation_time=now - datetime.timedelta(hours=1) if bad else None,
                    revocation_reason=None).responder_id(ocsp.OCSPResponderEncoding.HASH, CA)
                der = b.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)
        self.send_response(200)
        self.send_header("Content-Type", "application/ocsp-response")
        self.send_header("Content-Length", str(len(der)))
        self.end_headers()
        self.wfile.write(der)


srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print("PORT %d" % srv.server_address[1], flush=True)
srv.serve_forever()
