"""TLS and mutual TLS from the host's options (``tls-ca``, ``tls-cert``, ``tls-key``), against an
HTTPS server on 127.0.0.1 with a CA and certificates made here; the key's path is never logged."""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from kserve_servers import EXIT, WITX_F32
from test_kserve_faults import Misbehaving

NnRun = Callable[..., int]


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write(folder: Path, stem: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    cert_path, key_path = folder / f"{stem}.pem", folder / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA."""
    folder = tmp_path_factory.mktemp("pki")
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("wasinn test CA")).issuer_name(_name("wasinn test CA"))
          .public_key(ca_key.public_key()).serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .sign(ca_key, hashes.SHA256()))
    paths = {"ca": _write(folder, "ca", ca, ca_key)[0]}
    for stem, usage, names in (("server", ExtendedKeyUsageOID.SERVER_AUTH, True),
                               ("client", ExtendedKeyUsageOID.CLIENT_AUTH, False)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(f"wasinn test {stem}")).issuer_name(ca.subject)
                   .public_key(key.public_key()).serial_number(2 if names else 3)
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if names:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        paths[stem], paths[f"{stem}-key"] = _write(folder, stem, cert, key)
    return paths


def _https(pki: dict[str, Path], *, require_client: bool) -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Misbehaving)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki["server"], pki["server-key"])
    if require_client:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki["ca"])
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def https_port(pki: dict[str, Path]) -> Iterator[int]:
    yield from _https(pki, require_client=False)


@pytest.fixture
def mtls_port(pki: dict[str, Path]) -> Iterator[int]:
    yield from _https(pki, require_client=True)


def guest(nn_run: NnRun, tmp_path: Path, uri: str, *options: str) -> int:
    np.ones((1, 4), np.float32).tofile(tmp_path / "in.bin")
    flags = ["--nn-remote", f"affine={uri}"]
    for option in ("retries=0", "transport=json", "timeout=5", *options):
        flags += ["--nn-remote-option", f"affine:{option}"]
    return nn_run("--load-by-name", "affine", "--input", "0", WITX_F32, "1x4", "/d/in.bin", "--output", "0",
                  "/d/out.bin", flags=flags)


def test_tls_with_the_hosts_ca(https_port: int, pki: dict[str, Path], nn_run: NnRun, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"https://127.0.0.1:{https_port}/v2/models/affine"
    assert guest(nn_run, tmp_path, uri) == EXIT["runtime_error"]  # the system roots do not know our CA
    assert "CERTIFICATE_VERIFY_FAILED" in capsys.readouterr().err
    assert guest(nn_run, tmp_path, uri, f"tls-ca={pki['ca']}") == 0
    np.testing.assert_array_equal(np.fromfile(tmp_path / "out.bin", dtype="<f4"), np.full(4, 3.0, np.float32))


def test_mutual_tls(mtls_port: int, pki: dict[str, Path], nn_run: NnRun, tmp_path: Path,
                    capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"https://127.0.0.1:{mtls_port}/v2/models/affine"
    assert guest(nn_run, tmp_path, uri, f"tls-ca={pki['ca']}") == EXIT["runtime_error"]  # no client cert
    assert guest(nn_run, tmp_path, uri, f"tls-ca={pki['ca']}", f"tls-cert={pki['client']}",
                 f"tls-key={pki['client-key']}") == 0
    assert str(pki["client-key"]) not in capsys.readouterr().err


def test_tls_options_need_an_https_uri(pki: dict[str, Path], nn_run: NnRun, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert guest(nn_run, tmp_path, "http://127.0.0.1:1/v2/models/affine", f"tls-ca={pki['ca']}") \
        == EXIT["invalid_argument"]
    assert "https://" in capsys.readouterr().err
