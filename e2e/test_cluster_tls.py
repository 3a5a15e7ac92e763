"""Mutual TLS between controllers, brokers and `floe admin`: 3 `floe controller` + 2 `floe broker` processes.

The controllers serve Raft and the metadata services over TLS and ask every
caller for a certificate of the cluster's authority; brokers register, renew
leases and watch over TLS; a Kafka client produces and consumes through the
brokers as usual (the Kafka listeners are not part of this).  `floe admin`
with the files sees the cluster; without them, or with another authority's
files, it fails with an error instead of talking plaintext. Only the
controllers' certificate names speak Raft. A change of
authority is taken up by the running processes, with no restart.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import time
from pathlib import Path

from confluent_kafka.admin import NewTopic
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from cluster import AdminFailed, BrokerProcess, consume_all, floe_admin, make_cluster  # noqa: F401  (fixture)
from floe_e2e import admin_client, unique_name

import pytest


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


class Authority:
    """A throwaway CA; writes each party's ca.crt / tls.crt / tls.key (a kubernetes.io/tls Secret's keys)."""

    def __init__(self, cn: str):
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                key_encipherment=False, data_encipherment=False, key_agreement=False,
                encipher_only=False, decipher_only=False), critical=True)
            .sign(self.key, hashes.SHA256())
        )

    def write(self, directory: Path, party: str, ips=("127.0.0.1",)) -> list[str]:
        """The party's files; returns the three --controller-tls-* flags pointing at them."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(party)).issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName(party)] + [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        at = directory / party
        at.mkdir(parents=True, exist_ok=True)
        (at / "ca.crt").write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        (at / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        (at / "tls.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return [
            "--controller-tls-ca", str(at / "ca.crt"),
            "--controller-tls-cert", str(at / "tls.crt"),
            "--controller-tls-key", str(at / "tls.key"),
        ]


def _swap(path: Path, content: bytes) -> None:
    """Replace a file at once, as kubelet updates a mounted Secret."""
    tmp = path.with_suffix(".new")
    tmp.write_bytes(content)
    os.replace(tmp, path)


@pytest.mark.timeout(300)
def test_brokers_and_admin_reach_tls_controllers_and_plaintext_is_refused(make_cluster, tmp_path):
    ca = Authority("floe e2e authority")
    certs = tmp_path / "certs"
    cluster = make_cluster(
        brokers=2,
        # Only the controllers' certificate speaks Raft (before and after
        # the renewal below).
        controller_args=ca.write(certs, "controllers") + [
            "--controller-tls-peer-names", "controllers,controllers-renewed",
        ],
        broker_args=ca.write(certs, "brokers"),
    )

    # Brokers registered over TLS: Kafka clients see both and use them.
    topic = unique_name("tls")
    admin = admin_client(cluster.bootstrap)
    admin.create_topics([NewTopic(topic, num_partitions=4)])[topic].result(30)
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": cluster.bootstrap, "enable.idempotence": True})
    for i in range(200):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), partition=i % 4)
    assert p.flush(30) == 0
    got = consume_all(cluster.bootstrap, topic, 4)
    values = sorted(int(r.value[1:]) for records in got.values() for r in records)
    assert values == list(range(200))

    # The admin tool with a certificate of the authority.
    status = floe_admin(cluster, *ca.write(certs, "admin"), "status")
    assert sorted(b["id"] for b in status["brokers"]) == [1, 2], status

    # Plaintext, or another authority: an error, not an answer.
    with pytest.raises(AdminFailed):
        floe_admin(cluster, "status", timeout=60)
    stranger = Authority("another authority")
    with pytest.raises(AdminFailed):
        floe_admin(cluster, *stranger.write(certs, "stranger"), "status", timeout=60)

    # A new authority, without restarting anything (what cert-manager and
    # kubelet do): every party trusts both authorities, and the controllers
    # show a certificate of the new one. Each process reads its files again
    # (at most once a second, before a handshake), so an admin of the new
    # authority alone is served on its first connections after that, and
    # the brokers' open connections carry on.
    renewed = Authority("renewed authority")
    pem = serialization.Encoding.PEM
    bundle = ca.cert.public_bytes(pem) + renewed.cert.public_bytes(pem)
    fresh = certs / "controllers-renewed"
    renewed.write(certs, "controllers-renewed")
    _swap(certs / "brokers" / "ca.crt", bundle)
    _swap(certs / "controllers" / "ca.crt", bundle)
    _swap(certs / "controllers" / "tls.key", (fresh / "tls.key").read_bytes())
    _swap(certs / "controllers" / "tls.crt", (fresh / "tls.crt").read_bytes())
    newcomer = renewed.write(certs, "newcomer")
    deadline = time.monotonic() + 30
    while True:
        try:
            status = floe_admin(cluster, *newcomer, "status", timeout=60, timeout_secs=5)
            break
        except AdminFailed:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    assert sorted(b["id"] for b in status["brokers"]) == [1, 2], status
    for i in range(200, 300):
        p.produce(topic, key=str(i).encode(), value=f"v{i}".encode(), partition=i % 4)
    assert p.flush(30) == 0
    got = consume_all(cluster.bootstrap, topic, 4)
    values = sorted(int(r.value[1:]) for records in got.values() for r in records)
    assert values == list(range(300))
    # A party that trusts only the old authority refuses the controllers now.
    with pytest.raises(AdminFailed):
        floe_admin(cluster, *ca.write(certs, "admin"), "status", timeout=60, timeout_secs=5)

    # A broker without the files cannot register: it gives up with an error
    # naming the controllers, and the cluster still has two brokers.
    plain = BrokerProcess(tmp_path / "plain", 3, cluster.quorum.controllers_arg,
                          cluster.object_store, binary=cluster.binary)
    plain.spawn()
    try:
        code = plain.proc.wait(timeout=90)
    finally:
        plain.force_kill()
    assert code != 0
    assert "cannot register broker 3" in plain.log_text(), plain.log_tail()
    status = floe_admin(cluster, *newcomer, "status")
    assert sorted(b["id"] for b in status["brokers"]) == [1, 2], status
