"""What an operator sees when ``suricate serve`` cannot start, or ``check-config`` refuses a
file for a reason only OpenSSL or the database knows: one line per problem (a TOML path where
there is one), a non-zero exit code, never a Python traceback."""

from __future__ import annotations

import subprocess
from pathlib import Path

from suricate.net.certs import ensure_self_signed
from tests.e2e.harness import free_port, server_toml
from tests.e2e.test_cli import run


def _assert_clean_failure(res: subprocess.CompletedProcess[str], code: int) -> list[str]:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert "Traceback" not in res.stderr, res.stderr
    return [line for line in res.stderr.splitlines() if "WARNING" not in line]


def _encrypted_key(tmp: Path, password: str) -> tuple[Path, Path]:
    """A certificate whose private key is encrypted with ``password`` (PKCS#8, AES)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    certfile, keyfile = tmp / "enc.crt", tmp / "enc.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    keyfile.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode())))
    return certfile, keyfile


def test_unusable_certificates_are_refused_at_their_toml_path(tmp_path: Path) -> None:
    good = server_toml(tmp_path, free_port(), free_port())
    default, _ = ensure_self_signed(tmp_path / "certs", ["localhost"])
    other, _ = ensure_self_signed(tmp_path / "other", ["elsewhere"])
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("this is not a certificate\n")
    enc_cert, enc_key = _encrypted_key(tmp_path, "pw")

    def config(name: str, text: str) -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    cases = {
        # a file that is not PEM: OpenSSL's "no start line"
        config("garbage.toml", good.replace(f'tls.certfile = "{default.certfile}"',
                                            f'tls.certfile = "{garbage}"', 1)):
            'listen.c2s[0].tls.certfile: "' + str(garbage) + '" is not a PEM certificate',
        # the key of another certificate
        config("mismatch.toml", good.replace(f'tls.keyfile = "{default.keyfile}"',
                                             f'tls.keyfile = "{other.keyfile}"', 1)):
            f'listen.c2s[0].tls.keyfile: the key in "{other.keyfile}" is not the key of the '
            f'certificate in "{default.certfile}"',
        # an encrypted key and no tls.password: OpenSSL would otherwise ask on the terminal
        config("encrypted.toml", good.replace(f'tls.certfile = "{default.certfile}"',
                                              f'tls.certfile = "{enc_cert}"', 1)
               .replace(f'tls.keyfile = "{default.keyfile}"', f'tls.keyfile = "{enc_key}"',
                        1)):
            f'listen.c2s[0].tls.keyfile: "{enc_key}" holds no usable PEM private key',
        # certfile alone: the key is looked for in it (a combined PEM), and is not there
        config("nokey.toml", good.replace(f'tls.keyfile = "{default.keyfile}"\n', "", 1)):
            f'listen.c2s[0].tls.certfile: "{default.certfile}" holds no private key: give '
            "tls.keyfile, or append the key to this file",
        config("ciphers.toml", good.replace('tls.verify_mode = "none"',
                                            'tls.verify_mode = "none"\n'
                                            'tls.ciphers = "NO-SUCH-CIPHER"', 1)):
            "listen.c2s[0].tls.ciphers: OpenSSL accepts no cipher of 'NO-SUCH-CIPHER'",
    }
    for path, expected in cases.items():
        checked = _assert_clean_failure(run("check-config", str(path)), 2)
        assert any(line.startswith(expected) for line in checked), (path.name, checked)
        # serve validates the same way, before it binds anything (stdin closed: a prompt for
        # the key's password would fail rather than hang)
        served = _assert_clean_failure(run("serve", "--config", str(path), stdin=""), 2)
        assert any(expected in line for line in served), (path.name, served)

    with_password = config("password.toml", good.replace(
        f'tls.certfile = "{default.certfile}"',
        f'tls.certfile = "{enc_cert}"\ntls.password = "pw"', 1).replace(
        f'tls.keyfile = "{default.keyfile}"', f'tls.keyfile = "{enc_key}"', 1))
    assert run("check-config", str(with_password)).returncode == 0


def test_serve_without_its_database_says_so_in_one_line(tmp_path: Path) -> None:
    down = free_port()  # nothing listens there: PostgreSQL is "down"
    pool = f"""
[outgoing_pools.rdbms.default.connection]
driver = "pgsql"
host = "127.0.0.1"
port = {down}
database = "suricate"
username = "suricate"
password = "x"
"""
    config = tmp_path / "nodb.toml"
    config.write_text(server_toml(tmp_path, free_port(), free_port(), pool_toml=pool))
    lines = _assert_clean_failure(run("serve", "--config", str(config)), 1)
    assert len(lines) == 1, lines
    assert lines[0].startswith("suricate: cannot start: the database "
                               "([outgoing_pools.rdbms.default]): pgsql "
                               f"suricate@127.0.0.1:{down}/suricate: "), lines
    assert "another server" not in lines[0]

    # a file that is not an SQLite database
    broken = tmp_path / "broken.db"
    broken.write_text("not sqlite" * 100)
    config.write_text(server_toml(tmp_path, free_port(), free_port()).replace(
        str(tmp_path / "suricate.db"), str(broken)))
    lines = _assert_clean_failure(run("serve", "--config", str(config)), 1)
    assert lines == ["suricate: cannot start: the database ([outgoing_pools.rdbms.default]): "
                     f"sqlite {broken}: file is not a database"], lines

    # a file SQLite cannot open (here a folder; a read-only folder for a service's user):
    # the message names it, where SQLite's own does not
    folder = tmp_path / "a-folder"
    folder.mkdir()
    config.write_text(server_toml(tmp_path, free_port(), free_port()).replace(
        str(tmp_path / "suricate.db"), str(folder)))
    lines = _assert_clean_failure(run("serve", "--config", str(config)), 1)
    assert lines == ["suricate: cannot start: the database ([outgoing_pools.rdbms.default]): "
                     f"sqlite {folder}: unable to open database file"], lines


def test_an_unusable_data_folder_is_named_with_what_to_do(tmp_path: Path) -> None:
    # The embedded default keeps its data in ./data: run from a folder the user may not
    # write (an installed package's user, anywhere), it says where and what to do. A path
    # under a regular file fails for root as well as for anyone.
    blocker = tmp_path / "file"
    blocker.write_text("")
    data = blocker / "data"
    for args in (["serve"], ["account", "list"]):
        lines = _assert_clean_failure(run(*args, "--data-dir", str(data)), 1)
        assert len(lines) == 1, lines
        assert lines[0].startswith(f"suricate: the embedded default keeps its data in {data} "
                                   "(./data, or --data-dir DIR, or $SURICATE_DATA_DIR): "), lines
        assert "Not a directory; run it in a folder user " in lines[0], lines
        assert lines[0].endswith(" may write, give --data-dir a writable folder, or --config "
                                 "FILE"), lines


def test_a_port_in_use_is_named_with_its_hint(tmp_path: Path) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "busy.toml"
        config.write_text(server_toml(tmp_path, port, free_port()))
        lines = _assert_clean_failure(run("serve", "--config", str(config)), 1)
    assert len(lines) == 1 and lines[0].startswith("suricate: cannot start: "), lines
    assert f"{port}" in lines[0] and "(is another server using the port?)" in lines[0]


def test_check_config_takes_the_file_as_serve_does(tmp_path: Path) -> None:
    """``serve --config FILE`` and every admin command take --config: check-config too."""
    config = tmp_path / "suricate.toml"
    config.write_text(server_toml(tmp_path, free_port(), free_port()))
    res = run("check-config", "--config", str(config))
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == f"{config}: configuration is valid"
    lines = _assert_clean_failure(run("check-config"), 2)
    assert lines == ["suricate: check-config: give the configuration file, as FILE or "
                     "--config FILE"], lines


def test_a_mistyped_option_shows_the_subcommands_usage() -> None:
    """`--reson` for `--reason`: the usage printed is the command's, which lists the options
    that exist, not the top level's `suricate [-h] [--version] COMMAND ...`."""
    res = run("session", "kickUser", "--user", "alice@localhost", "--reson", "bye")
    assert res.returncode == 2
    assert res.stderr.startswith("usage: suricate session kickUser [-h] --user JID "
                                 "[--reason String]"), res.stderr
    assert res.stderr.rstrip().endswith("suricate session kickUser: error: unrecognized "
                                        "arguments: --reson bye"), res.stderr
    served = run("serve", "--confg", "x.toml")
    assert served.returncode == 2
    assert served.stderr.startswith("usage: suricate serve [-h] [--config FILE]"), served.stderr
