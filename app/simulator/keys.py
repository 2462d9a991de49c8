"""Key material kept in the state dir: the throw-away TLS CA and server certificate, and the token-signing key."""
from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import jwt
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

SERVER_NAMES = ("127.0.0.1", "localhost")


def _write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read (private keys, tokens)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path


def ensure_tls(state_dir: Path) -> TlsFiles:
    """Make a throw-away CA and a server certificate for 127.0.0.1/localhost once; reuse them afterwards."""
    files = TlsFiles(state_dir / "ca.pem", state_dir / "server.pem", state_dir / "server-key.pem")
    if files.ca.exists() and files.cert.exists() and files.key.exists():
        return files
    ca = trustme.CA(organization_name="ProofUp simulator throw-away CA")
    leaf = ca.issue_cert(*SERVER_NAMES, not_after=dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=825))
    files.ca.write_bytes(ca.cert_pem.bytes())
    files.cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
    _write_private(files.key, leaf.private_key_pem.bytes())
    return files


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64url(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class TokenVerificationError(Exception):
    """A token's signature or shape is wrong (claims are checked by the caller against the simulator clock)."""


class SigningKey:
    """The RSA key and self-signed certificate AD FS and Entra sign tokens with (RS256, kid = x5t)."""

    def __init__(self, state_dir: Path):
        key_path, cert_path = state_dir / "token-signing-key.pem", state_dir / "token-signing.pem"
        if key_path.exists() and cert_path.exists():
            self._key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            self._cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        else:
            self._key, self._cert = self._generate()
            _write_private(key_path, self._key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
            cert_path.write_bytes(self._cert.public_bytes(serialization.Encoding.PEM))
        der = self._cert.public_bytes(serialization.Encoding.DER)
        self.kid = _b64url(hashlib.sha1(der).digest())  # AD FS and Entra use the SHA-1 thumbprint as kid and x5t
        self._der_b64 = base64.b64encode(der).decode()

    @staticmethod
    def _generate():
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ADFS Signing - simulator")])
        now = dt.datetime.now(dt.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
                .not_valid_after(now + dt.timedelta(days=3650)).sign(key, hashes.SHA256()))
        return key, cert

    def jwks(self) -> dict:
        """Return the JSON Web Key Set both issuers publish."""
        numbers = self._key.public_key().public_numbers()
        return {"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, "x5t": self.kid,
            "n": _int_b64url(numbers.n), "e": _int_b64url(numbers.e), "x5c": [self._der_b64],
        }]}

    def sign(self, claims: dict) -> str:
        """Sign claims as an RS256 JWT."""
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "x5t": self.kid})

    def verify(self, token: str) -> dict:
        """Check the signature and return the claims; expiry and audience are the caller's job."""
        try:
            header = jwt.get_unverified_header(token)
            if header.get("kid") != self.kid:
                raise TokenVerificationError("signing key not found")
            return jwt.decode(token, self._key.public_key(), algorithms=["RS256"],
                              options={"verify_aud": False, "verify_exp": False, "verify_iat": False,
                                       "verify_nbf": False, "verify_iss": False})
        except jwt.PyJWTError as exc:
            raise TokenVerificationError(str(exc)) from exc
