"""Server certificates for the TLS frontends (FTPS and HTTPS).

A listener's certificate and key come from its config section (``tls_cert`` / ``tls_key``); when
both are empty (the embedded default) a self-signed ECDSA P-256 certificate is generated once in
``<data_dir>/tls`` and shared by every frontend. ECDSA rather than RSA: FTPS does a handshake per
data connection, and a P-256 signature costs a fraction of an RSA-2048 one; every TLS 1.2 client
has it.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

log = structlog.get_logger("xferd.tls")

CERT_NAME = "cert.pem"
KEY_NAME = "key.pem"
VALID_DAYS = 3650


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the DER certificate, as clients show it


def load_or_create(cert_file: str, key_file: str, tls_dir: Path) -> TlsFiles:
    """The configured certificate, or the generated one (created on first use)."""
    if cert_file:
        cert, key = Path(cert_file), Path(key_file)
    else:
        cert, key = tls_dir / CERT_NAME, tls_dir / KEY_NAME
        if not (cert.exists() and key.exists()):
            _generate(cert, key)
    der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
    digest = hashlib.sha256(der).hexdigest().upper()
    return TlsFiles(cert, key, ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)))


def _generate(cert_path: Path, key_path: Path) -> None:
    cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    host = socket.gethostname()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName(host), x509.DNSName("localhost"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1"))]),
                critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    log.info("tls.certificate_generated", path=str(cert_path))


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
