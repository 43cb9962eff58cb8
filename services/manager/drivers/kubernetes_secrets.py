"""What the kubernetes driver generates for a tenant cluster: the superuser's password and
the certificates that secure traffic between the engine's nodes.

Both are made once, when a cluster's namespace first gets its Secrets, and then live only
in those Secrets: nothing here is logged, and `render` shows placeholders instead.
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CERTIFICATE_LIFETIME = timedelta(days=5 * 365)


def generate_password(length: int = 24) -> str:
    """Letters, digits and '-' or '_': strong enough for OpenSearch's initial-password check,
    and safe inside the double quotes of a shell probe."""
    classes = [string.ascii_uppercase, string.ascii_lowercase, string.digits, "-_"]
    alphabet = string.ascii_letters + string.digits
    chars = [secrets.choice(c) for c in classes] + [secrets.choice(alphabet) for _ in range(length - len(classes))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


@dataclass(frozen=True)
class TransportCertificates:
    """A cluster's own CA and the one node certificate all its nodes present to each other."""

    ca_pem: str
    cert_pem: str
    key_pem: str = field(repr=False)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def issue_transport_certificates(
    cluster_id: str, node_domains: list[str], now: datetime
) -> TransportCertificates:
    """A fresh CA per cluster, so no two tenant clusters trust each other's nodes."""
    ca_key, node_key = _key(), _key()
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"es-serverless {cluster_id} transport CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # tolerate nodes whose clocks run behind
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False, key_agreement=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    node = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cluster_id}-node")]))
        .issuer_name(ca_name)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(d) for d in node_domains]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return TransportCertificates(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM).decode(),
        cert_pem=node.public_bytes(serialization.Encoding.PEM).decode(),
        key_pem=node_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
    )
