"""TLS helper: a self-signed development certificate (HSTS lives in flowlet.security.hsts).

Serving itself is granian's job (``ssl_cert``/``ssl_key``); it negotiates HTTP/2 or HTTP/1.1
by ALPN. This module only prepares what granian needs.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from pathlib import Path
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


# ---- self-signed development certificate ------------------------------------------------------

DEFAULT_NAMES = ("localhost", "127.0.0.1", "::1")
VALID_DAYS = 90
RENEW_BEFORE = dt.timedelta(days=1)   # regenerate when less than this remains


def _san_entries(names: Iterable[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for name in (*DEFAULT_NAMES, *names):
        name = name.strip().lower().rstrip(".")
        if not name:
            continue
        entry: x509.GeneralName
        try:
            entry = x509.IPAddress(ipaddress.ip_address(name.strip("[]")))
        except ValueError:
            try:
                entry = x509.DNSName(name.encode("idna").decode("ascii"))
            except UnicodeError:
                raise ValueError(f"not a host name or IP address: {name!r}") from None
        if entry not in out:
            out.append(entry)
    return out


def _san_key(entries: Iterable[x509.GeneralName]) -> frozenset[str]:
    return frozenset(f"{type(e).__name__}:{e.value}" for e in entries)


def _still_usable(cert_path: Path, key_path: Path, wanted: frozenset[str]) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, x509.ExtensionNotFound):
        return False
    now = dt.datetime.now(dt.timezone.utc)
    if not (cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc):
        return False
    if _san_key(san) != wanted:
        return False
    return cert.public_key() == key.public_key()


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write atomically; the file has ``mode`` from its first byte on."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def ensure_self_signed(workspace_dir: Path | str, names: Iterable[str] = ()) -> tuple[Path, Path]:
    """A development certificate under ``.flowlet/tls/`` -> (cert_path, key_path).

    EC P-256, valid for localhost, 127.0.0.1, ::1 and ``names``. Reused while valid for the
    same names; regenerated when it expires within a day, the names change or the files are
    unreadable. The key file is mode 0600. For development only: browsers warn about it
    unless it is trusted explicitly.
    """
    tls_dir = Path(workspace_dir) / ".flowlet" / "tls"
    cert_path, key_path = tls_dir / "dev-cert.pem", tls_dir / "dev-key.pem"
    entries = _san_entries(names)
    if _still_usable(cert_path, key_path, _san_key(entries)):
        if key_path.stat().st_mode & 0o077:
            os.chmod(key_path, 0o600)
        return cert_path, key_path

    tls_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([
        x509.NameAttribute(NameOID.COMMON_NAME, "localhost"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Flowlet development certificate"),
    ])
    now = dt.datetime.now(dt.timezone.utc)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(entries), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=False, crl_sign=False,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    _write_private(key_path, key_pem, 0o600)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path
