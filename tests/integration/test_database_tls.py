"""Database connections over TLS: a URL's TLS options reach the driver and connectorx alike.

The shared servers run without TLS (and are never reconfigured), so these tests start private servers of their
own with a certificate made for them by a test certificate authority: a PostgreSQL cluster that takes TLS
connections only (`hostssl` in pg_hba.conf), and a MariaDB whose test login requires TLS (`REQUIRE SSL`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import shutil
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import polars as pl
import pytest
import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import ThrowawayServers
from tests.processes import owned_temp_dir
from tests.torture.clusters import PrivateMariaDB, PrivatePostgres
from zonesync.tasks.zones.engines import create_engine, dialect_for, parse_url
from zonesync.tasks.zones.profiles import limits_of

# The session's own encryption: pg_stat_ssl says whether the connection asking is encrypted.
IS_ENCRYPTED = (
    sa.select(sa.column("ssl", sa.Boolean))
    .select_from(sa.table("pg_stat_ssl"))
    .where(sa.column("pid") == sa.func.pg_backend_pid())
)


def _authority(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, certificate


def _server_certificate(
    authority: tuple[ec.EllipticCurvePrivateKey, x509.Certificate],
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate for 127.0.0.1, signed by `authority`."""
    ca_key, ca = authority
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    return key, certificate


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def tls_cluster() -> Iterator[tuple[PrivatePostgres, Path, Path]]:
    """A private PostgreSQL that takes TLS connections only; the CA that signed its certificate, and another."""
    cluster = PrivatePostgres()
    authority = _authority("zonesync test CA")
    key, certificate = _server_certificate(authority)
    files = {
        "server.crt": _pem(certificate),
        "server.key": key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    }
    for name, content in files.items():
        path = cluster.data / name
        path.write_bytes(content)
        path.chmod(0o600)
        shutil.chown(path, "postgres")
    with open(cluster.data / "postgresql.conf", "a") as conf:
        conf.write("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")
    (cluster.data / "pg_hba.conf").write_text("local all all trust\nhostssl all all 127.0.0.1/32 trust\n")
    ca_file, other_ca_file = cluster.dir / "ca.pem", cluster.dir / "other-ca.pem"
    ca_file.write_bytes(_pem(authority[1]))
    other_ca_file.write_bytes(_pem(_authority("someone else's CA")[1]))
    cluster.start()
    try:
        yield cluster, ca_file, other_ca_file
    finally:
        cluster.close()


def _engine(url: str) -> sa.Engine:
    return create_engine(parse_url(url, setting="ZONESYNC_INTERNET_URL"), zone="internet")


@pytest.mark.backend("postgresql")
def test_tls_options_of_a_url_reach_psycopg_and_connectorx(tls_cluster: tuple[PrivatePostgres, Path, Path]) -> None:
    cluster, ca_file, _ = tls_cluster
    database = cluster.fresh_database("zs_tls")
    engine = _engine(f"{database}?sslmode=verify-ca&sslrootcert={ca_file}")

    with engine.connect() as conn:
        assert conn.execute(IS_ENCRYPTED).scalar_one() is True
    frame = dialect_for(engine).read_frame(IS_ENCRYPTED, {"ssl": pl.Boolean()})
    assert frame["ssl"].to_list() == [True]  # connectorx verified the same certificate
    engine.dispose()


@pytest.mark.backend("postgresql")
def test_the_server_refuses_plain_connections_and_both_readers_refuse_a_certificate_they_cannot_verify(
    tls_cluster: tuple[PrivatePostgres, Path, Path],
) -> None:
    cluster, _, other_ca_file = tls_cluster
    database = cluster.fresh_database("zs_tls_refused")

    plain = _engine(f"{database}?sslmode=disable")
    with pytest.raises(sa.exc.OperationalError, match="no encryption"):
        plain.connect()
    plain.dispose()

    unverifiable = _engine(f"{database}?sslmode=verify-ca&sslrootcert={other_ca_file}")
    with pytest.raises(sa.exc.OperationalError, match="certificate verify failed"):
        unverifiable.connect()
    with pytest.raises(Exception, match=r"(?i)certificate"):
        dialect_for(unverifiable).read_frame(IS_ENCRYPTED, {"ssl": pl.Boolean()})
    unverifiable.dispose()


@pytest.mark.backend("postgresql")
@pytest.mark.parametrize("query", ["", "?sslmode=prefer"])
def test_the_default_tls_mode_still_encrypts_connectorx_where_the_server_offers_tls(
    tls_cluster: tuple[PrivatePostgres, Path, Path], query: str
) -> None:
    cluster, _, _ = tls_cluster
    engine = _engine(cluster.fresh_database(f"zs_tls_prefer{len(query)}") + query)

    with engine.connect() as conn:
        assert conn.execute(IS_ENCRYPTED).scalar_one() is True
    assert dialect_for(engine).read_frame(IS_ENCRYPTED, {"ssl": pl.Boolean()})["ssl"].to_list() == [True]
    engine.dispose()


@pytest.mark.backend("postgresql")
@pytest.mark.parametrize("query", ["", "?sslmode=prefer", "?sslmode=allow"])
def test_connectorx_skips_tls_only_once_the_driver_found_the_server_speaks_plain_text(
    servers: ThrowawayServers, query: str
) -> None:
    engine = _engine(servers.get("postgresql").zone_url("internet") + query)
    dialect = dialect_for(engine)

    def told() -> list[str]:
        return parse_qs(urlsplit(dialect.connecting.reader_url(engine, limits_of(engine))).query).get("sslmode", [])

    assert told() == (["prefer"] if query else [])  # nothing known yet: the URL's own mode (allow: prefer)
    with engine.connect() as conn:
        assert conn.execute(IS_ENCRYPTED).scalar_one() is False
    assert told() == ["disable"]  # what `prefer` ends in with this server, without loading certificates
    assert dialect.read_frame(IS_ENCRYPTED, {"ssl": pl.Boolean()})["ssl"].to_list() == [False]
    engine.dispose()


# -- MariaDB: ssl_mode and ssl_ca, as the MySQL client names them ---------------------------------------------

SSL_CIPHER = (
    sa.select(sa.column("VARIABLE_VALUE", sa.String).label("cipher"))
    .select_from(sa.table("SESSION_STATUS", schema="information_schema"))
    .where(sa.column("VARIABLE_NAME") == "SSL_CIPHER")
)


@pytest.fixture(scope="module")
def tls_mariadb() -> Iterator[tuple[PrivateMariaDB, Path, Path]]:
    """A private MariaDB with a certificate for 127.0.0.1 from a test CA, and a login (`tls`) that may only
    connect over TLS; that CA's file, and another CA's."""
    authority = _authority("zonesync test CA")
    key, certificate = _server_certificate(authority)
    directory = Path(owned_temp_dir("zonesync-mariadb-tls-"))
    files = {"ca.pem": _pem(authority[1]), "other-ca.pem": _pem(_authority("someone else's CA")[1]),
             "server.crt": _pem(certificate),
             "server.key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption())}  # fmt: skip
    for name, content in files.items():
        (directory / name).write_bytes(content)
    server = PrivateMariaDB(
        f"--ssl-ca={directory / 'ca.pem'}", f"--ssl-cert={directory / 'server.crt'}",
        f"--ssl-key={directory / 'server.key'}",
    )  # fmt: skip
    server.start()
    try:
        server.fresh_database("zs_tls")
        admin = sa.create_engine(parse_url(server.url("mysql"), setting="admin"), isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            for statement in (
                "CREATE USER 'tls'@'%%' REQUIRE SSL",
                "CREATE USER 'tls'@'localhost' REQUIRE SSL",
                "GRANT ALL ON zs_tls.* TO 'tls'@'%%'",
                "GRANT ALL ON zs_tls.* TO 'tls'@'localhost'",
            ):
                conn.exec_driver_sql(statement)  # fmt: skip
        admin.dispose()
        yield server, directory / "ca.pem", directory / "other-ca.pem"
    finally:
        server.close()
        shutil.rmtree(directory, ignore_errors=True)


def _mariadb(server: PrivateMariaDB, query: str, host: str = "127.0.0.1") -> sa.Engine:
    return _engine(f"mysql://tls@{host}:{server.port}/zs_tls?{query}")


def _ciphers(engine: sa.Engine) -> tuple[str, str]:
    """The TLS cipher of PyMySQL's connection and of connectorx's ('' when not encrypted)."""
    with engine.connect() as conn:
        ours = conn.execute(SSL_CIPHER).scalar_one()
    theirs = dialect_for(engine).read_frame(SSL_CIPHER, {"cipher": pl.String()})["cipher"].to_list()
    return ours, theirs[0]


@pytest.mark.backend("mariadb")
@pytest.mark.parametrize("mode", ["required", "verify_ca", "verify_identity"])
def test_mariadb_tls_options_reach_pymysql_and_connectorx(
    tls_mariadb: tuple[PrivateMariaDB, Path, Path], mode: str
) -> None:
    server, ca_file, _ = tls_mariadb
    engine = _mariadb(server, f"ssl_mode={mode}&ssl_ca={ca_file}")

    ours, theirs = _ciphers(engine)

    assert ours and theirs, "both readers must be encrypted"
    engine.dispose()


@pytest.mark.backend("mariadb")
def test_mariadb_tls_refuses_a_certificate_of_another_ca_or_another_host_in_both_readers(
    tls_mariadb: tuple[PrivateMariaDB, Path, Path],
) -> None:
    server, ca_file, other_ca_file = tls_mariadb

    plain = _mariadb(server, "ssl_mode=disabled")  # the login requires TLS (connectorx: each refusal costs it 30 s)
    with pytest.raises(sa.exc.OperationalError, match="Access denied"):
        plain.connect()
    plain.dispose()
    other_ca = _mariadb(server, f"ssl_mode=verify_ca&ssl_ca={other_ca_file}")
    with pytest.raises(sa.exc.OperationalError, match="certificate verify failed"):
        other_ca.connect()
    other_ca.dispose()
    # connectorx too (once: it fails any connection after 30 s): had it been asked for less than the host's name
    # (verify_ca), it would have read from a server whose certificate was made for another host.
    other_host = _mariadb(server, f"ssl_mode=verify_identity&ssl_ca={ca_file}", host="localhost")  # for 127.0.0.1
    with pytest.raises(sa.exc.OperationalError, match="certificate verify failed"):
        other_host.connect()
    with pytest.raises(Exception, match="certificate verify failed"):
        dialect_for(other_host).read_frame(SSL_CIPHER, {"cipher": pl.String()})
    other_host.dispose()
