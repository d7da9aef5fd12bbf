"""FTPS certificates and the TLS context shared by every FTP listener.

The certificate and key come from ``ftp.tls_cert`` / ``ftp.tls_key``; when both are empty (the
embedded default) a self-signed ECDSA P-256 certificate is generated once in ``<data_dir>/tls``
and reused. ECDSA rather than RSA: FTPS does a handshake per data connection, and a P-256
signature costs a fraction of an RSA-2048 one; every TLS 1.2 client has it.

One context serves the explicit and the implicit port, so its session cache lets a data
connection resume the control connection's session whichever port the client came in on.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from OpenSSL._util import lib as _openssl

from xferd.config import FtpConfig

log = structlog.get_logger("xferd.ftp")

CERT_NAME = "ftp_cert.pem"
KEY_NAME = "ftp_key.pem"
VALID_DAYS = 3650
# TLS 1.2 suites (1.3 has its own, all AEAD): ECDHE key exchange, AES-GCM or ChaCha20 (Mozilla's
# "intermediate" list without the DHE suites).
TLS12_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20"


@dataclass(frozen=True)
class TlsFiles:
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the DER certificate, as clients show it


def load_or_create(config: FtpConfig, tls_dir: Path) -> TlsFiles:
    """The configured certificate, or the generated one (created on first use)."""
    if config.tls_cert:
        cert, key = Path(config.tls_cert), Path(config.tls_key)
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
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(host), x509.DNSName("localhost")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    _write_private(key_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM))
    log.info("ftp.certificate_generated", path=str(cert_path))


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def make_context(files: TlsFiles, max_version: str = "1.2") -> SSL.Context:
    """TLS 1.2 (and 1.3 if allowed) with forward-secret AEAD ciphers only, no compression or
    renegotiation, sessions cached for data connections. Raises ValueError when the certificate
    or key is not usable."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_max_proto_version(SSL.TLS1_3_VERSION if max_version == "1.3" else SSL.TLS1_2_VERSION)
    ctx.set_cipher_list(TLS12_CIPHERS)
    ctx.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_NO_RENEGOTIATION | SSL.OP_CIPHER_SERVER_PREFERENCE)
    try:
        ctx.use_certificate_chain_file(str(files.cert))
        ctx.use_privatekey_file(str(files.key))
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise ValueError(f"{files.cert} / {files.key}: {exc}") from exc
    ctx.set_session_cache_mode(SSL.SESS_CACHE_SERVER)
    # Resumption is refused without a session id context; one name for the whole server.
    ctx.set_session_id(b"xferd-ftp")
    return ctx


def session_reused(conn: SSL.Connection) -> bool:
    """Whether a handshake resumed an earlier session (pyOpenSSL has no public accessor)."""
    return bool(_openssl.SSL_session_reused(conn._ssl))
