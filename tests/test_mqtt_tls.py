"""MQTT over TLS: the subscriber checks a real Mosquitto's certificate with IOC_MQTT_CA_FILE.

The test makes its own certificate authority and a broker certificate for 127.0.0.1 (the
``cryptography`` package); the broker has a TLS listener beside its plain one, where the
device publishes.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ioc.bench.mosquitto import mosquitto
from ioc.settings import Settings
from tests.conftest import start_server, stop_server
from tests.test_mqtt import ROUTES, Publisher, _prepare, open_session, reading, rows, wait_for


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def certificates() -> tuple[bytes, bytes, bytes]:
    """(CA certificate, broker certificate, broker key), in PEM."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("ioc test CA"))
        .issuer_name(_name("ioc test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return (
        ca.public_bytes(pem),
        server.public_bytes(pem),
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def test_the_subscriber_checks_the_broker_certificate_with_the_ca_file(
    settings: Settings, tmp_path: Path
) -> None:
    ca, certificate, key = certificates()
    (tmp_path / "ca.pem").write_bytes(ca)
    routes = tmp_path / "routes.toml"
    routes.write_text(ROUTES, encoding="utf-8")
    with mosquitto(tls=(certificate, key)) as broker:
        open_session(broker, "ioc-tls", routes)
        chosen = settings.model_copy(
            update={
                "mqtt_url": broker.tls_url,
                "mqtt_ca_file": tmp_path / "ca.pem",
                "mqtt_api_key": _prepare(settings.database_url or ""),
                "mqtt_routes_file": routes,
                "mqtt_client_id": "ioc-tls",
            }
        )
        assert chosen.mqtt_url and chosen.mqtt_url.startswith("mqtts://")
        thread, server = start_server(chosen)
        device = Publisher(broker, "counter-tls")
        try:
            for minute in range(30):
                device.publish("ioc/traffic/HUE-TS-001", reading(minute))
            wait_for(
                lambda: len(rows(server.db_url, "SELECT 1 FROM traffic_readings")) == 30,
                "the readings taken over TLS",
            )
        finally:
            device.close()
            stop_server(thread)
        log = (broker.home / "mosquitto.log").read_text(encoding="utf-8", errors="replace")
        assert "error" not in log.lower(), log
