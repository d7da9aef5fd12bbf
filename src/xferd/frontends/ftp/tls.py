"""The TLS context shared by every FTP listener.

One context serves the explicit and the implicit port, so its session cache lets a data
connection resume the control connection's session whichever port the client came in on.
The certificate comes from :mod:`xferd.frontends.certs`.
"""

from __future__ import annotations

from OpenSSL import SSL
from OpenSSL._util import lib as _openssl

from xferd.frontends.certs import TlsFiles

# TLS 1.2 suites (1.3 has its own, all AEAD): ECDHE key exchange, AES-GCM or ChaCha20 (Mozilla's
# "intermediate" list without the DHE suites).
TLS12_CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20"


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
