"""Check the host certificate ``ssmsend`` will present to the ARGO messaging service.

Records are only queued when the sender can send them: a missing, unreadable,
malformed or expired certificate stops the export with an error that names
the config key, and the records stay in the store until it is fixed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from ai4os_kit.errors import InputError

_FIX_CERT = ("install the site's host certificate (IGTF-accredited, the DN registered for the service in GOCDB) "
             "there, or point {key} at it")


def _read(path: Path | None, file: str, key: str) -> bytes:
    if path is None:
        raise InputError(file, key, "missing: ssmsend needs a host certificate and key",
                         "set ssm.host_cert and ssm.host_key (accounting_ssm_host_cert/_key in the inventory)")
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(file, key, f"{path} does not exist", _FIX_CERT.format(key=key)) from None
    except OSError as exc:
        raise InputError(file, key, f"{path} cannot be read: {exc.strerror}",
                         "let the accounting service user read it (the key: mode 0600, owned by that user)") from None


def check_host_certificate(cert: Path | None, key: Path | None, config_file: str,
                           now: dt.datetime | None = None) -> str:
    """Return the certificate's subject; raise InputError when ssmsend could not use the pair."""
    pem = _read(cert, config_file, "ssm.host_cert")
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise InputError(config_file, "ssm.host_cert", f"{cert} is not a PEM X.509 certificate",
                         _FIX_CERT.format(key="ssm.host_cert")) from None
    now = now or dt.datetime.now(dt.timezone.utc)
    if certificate.not_valid_after_utc <= now:
        raise InputError(config_file, "ssm.host_cert",
                         f"{cert} expired on {certificate.not_valid_after_utc:%Y-%m-%d}",
                         "renew the host certificate") from None
    key_pem = _read(key, config_file, "ssm.host_key")
    try:
        private = load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError):
        raise InputError(config_file, "ssm.host_key", f"{key} is not an unencrypted PEM private key",
                         "ssmsend needs the key without a passphrase (openssl pkey -in KEY -out KEY.plain)") from None
    if private.public_key() != certificate.public_key():
        raise InputError(config_file, "ssm.host_key", f"{key} does not belong to {cert}",
                         "use the key the certificate was issued for") from None
    return certificate.subject.rfc4514_string()
