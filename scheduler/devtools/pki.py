"""Certificates and keys for the local development control plane.

Generates, once per cluster directory, everything kube-apiserver and its clients need to run
with TLS, client-certificate authentication and RBAC on 127.0.0.1:

* ``ca.crt``/``ca.key``: the cluster CA (client CA and issuer of the serving certificate);
* ``apiserver.crt``/``apiserver.key``: the serving certificate for 127.0.0.1 and localhost;
* ``admin.crt``/``admin.key``: a client certificate ``CN=admin, O=system:masters``;
* ``sa.key``/``sa.pub``: the service-account token signing key pair;
* ``front-proxy-ca.crt`` and ``front-proxy-client.crt``/``.key``: for aggregated APIs
  (metrics-server).

Nothing here talks to the network; files are written with owner-only permissions.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

FRONT_PROXY_CLIENT_CN = "front-proxy-client"
_VALIDITY = datetime.timedelta(days=365)


@dataclass(frozen=True, slots=True, kw_only=True)
class PkiPaths:
    """Where the generated credentials live inside one cluster directory."""

    root: Path

    @property
    def ca_crt(self) -> Path:
        """Cluster CA certificate."""
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        """Cluster CA private key."""
        return self.root / "ca.key"

    @property
    def serving_crt(self) -> Path:
        """kube-apiserver serving certificate."""
        return self.root / "apiserver.crt"

    @property
    def serving_key(self) -> Path:
        """kube-apiserver serving key."""
        return self.root / "apiserver.key"

    @property
    def admin_crt(self) -> Path:
        """Admin client certificate (system:masters)."""
        return self.root / "admin.crt"

    @property
    def admin_key(self) -> Path:
        """Admin client key."""
        return self.root / "admin.key"

    @property
    def sa_key(self) -> Path:
        """Service-account signing key."""
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        """Service-account verification key."""
        return self.root / "sa.pub"

    @property
    def front_proxy_ca_crt(self) -> Path:
        """CA that signs the front-proxy client certificate."""
        return self.root / "front-proxy-ca.crt"

    @property
    def front_proxy_client_crt(self) -> Path:
        """Client certificate kube-apiserver presents to aggregated API servers."""
        return self.root / "front-proxy-client.crt"

    @property
    def front_proxy_client_key(self) -> Path:
        """Key of the front-proxy client certificate."""
        return self.root / "front-proxy-client.key"


def _write_private(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)


def _key_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _new_ca(
    common_name: str, now: datetime.datetime
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    *,
    ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey],
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    now: datetime.datetime,
    sans: list[x509.GeneralName] | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def _save(cert: x509.Certificate, key: ec.EllipticCurvePrivateKey, crt: Path, pem: Path) -> None:
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_private(pem, _key_pem(key))


def ensure_pki(root: Path, *, now: datetime.datetime | None = None) -> PkiPaths:
    """Create the cluster credentials under ``root`` unless they already exist.

    Args:
        root: directory for the files; created if missing.
        now: issue time (defaults to the current UTC time).

    Returns:
        The paths of every generated file. Existing files are kept, so a restarted control
        plane keeps trusting the same client certificates.
    """
    paths = PkiPaths(root=root)
    if paths.front_proxy_client_key.exists():
        return paths
    root.mkdir(parents=True, exist_ok=True)
    issued_at = now or datetime.datetime.now(datetime.UTC)
    ca = _new_ca("wfsched-dev-ca", issued_at)
    _save(*ca, paths.ca_crt, paths.ca_key)
    serving = _issue(
        ca=ca,
        subject=_name("kube-apiserver"),
        usage=ExtendedKeyUsageOID.SERVER_AUTH,
        now=issued_at,
        sans=[
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            x509.DNSName("localhost"),
            x509.DNSName("kubernetes.default.svc"),
        ],
    )
    _save(*serving, paths.serving_crt, paths.serving_key)
    admin = _issue(
        ca=ca,
        subject=_name("admin", "system:masters"),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        now=issued_at,
    )
    _save(*admin, paths.admin_crt, paths.admin_key)
    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write_private(paths.sa_key, _key_pem(sa_key))
    paths.sa_pub.write_bytes(
        sa_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    proxy_ca = _new_ca("wfsched-dev-front-proxy-ca", issued_at)
    paths.front_proxy_ca_crt.write_bytes(proxy_ca[0].public_bytes(serialization.Encoding.PEM))
    proxy_client = _issue(
        ca=proxy_ca,
        subject=_name(FRONT_PROXY_CLIENT_CN),
        usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        now=issued_at,
    )
    _save(*proxy_client, paths.front_proxy_client_crt, paths.front_proxy_client_key)
    return paths
