"""Values round-trip byte for byte through `secrets set` and `broker get`, whatever the bytes;
one trailing newline is dropped unless --raw; more than 1 MiB is refused and nothing stored."""

import base64
import os

import pytest

from coretools import one_line_error

MIB = 1 << 20


def _pem(size):
    body = base64.encodebytes(os.urandom(size * 3 // 4)).decode()  # 76-column lines
    return f"-----BEGIN PRIVATE KEY-----\n{body}-----END PRIVATE KEY-----\n".encode()


PEM = _pem(64 * 1024)
VALUES = {
    "empty": b"",
    "one byte": b"x",
    "nul only": b"\x00",
    "binary with NULs": bytes(range(256)) * 4 + b"\x00\x00end\x00",
    "random binary": os.urandom(4096),
    "64 KiB PEM": PEM,
    "utf-8": "pässwörd – 密码 – パスワード – 🔑\n".encode(),
    "invalid utf-8": b"\xff\xfe\xc3\x28\xa0\xa1",
    "only newlines": b"\n\n\n",
    "crlf": b"line1\r\nline2\r\n",
    "trailing spaces": b"  spaced  ",
    "all hex": b"deadbeef" * 4,
    "exactly 1 MiB": os.urandom(MIB),
}


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    from installtree import Tree

    tree = Tree(tmp_path_factory.mktemp("values"))
    tree.enroll_seed()
    return tree


@pytest.mark.parametrize("label", list(VALUES))
def test_raw_round_trip_is_byte_exact(shared, label):
    name = "v/" + label.replace(" ", "-").replace("/", "-")
    value = VALUES[label]
    result = shared.run("secrets", "set", name, "--raw", "--allow-empty", "--tier", "open", input=value)
    assert result.returncode == 0, result.stderr
    got = shared.as_agent("broker", "get", name)
    assert got.returncode == 0 and got.stderr == b""
    assert got.stdout == value  # no newline added, nothing trimmed
    assert (shared.state / "secrets" / name.replace("/", "%")).read_bytes() == value


def test_round_trip_under_a_grant(tree):
    value = VALUES["binary with NULs"]
    tree.set_secret("granted", value, tier="controlled")
    assert tree.as_agent("approve", "granted", tree.code()).returncode == 0
    assert tree.as_agent("broker", "get", "granted").stdout == value


@pytest.mark.parametrize("typed, stored", [
    (b"abc\n", b"abc"),
    (b"abc", b"abc"),
    (b"abc\n\n", b"abc\n"),       # only one newline is dropped
    (b"\n", b""),
    (b"abc\r\n", b"abc\r"),       # only "\n" is a newline here
    (PEM, PEM[:-1]),
], ids=["newline", "none", "two", "only-newline", "crlf", "pem"])
def test_one_trailing_newline_is_dropped_without_raw(shared, typed, stored):
    assert shared.run("secrets", "set", "nl", "--force", "--allow-empty", "--tier", "open", input=typed).returncode == 0
    assert shared.as_agent("broker", "get", "nl").stdout == stored


@pytest.mark.parametrize("size", [MIB + 1, 3 * MIB])
@pytest.mark.parametrize("existing", [None, b"old value"])
def test_more_than_1_mib_is_refused_and_nothing_is_stored(tree, size, existing):
    if existing is not None:
        tree.set_secret("big", existing, tier="open")
    result = tree.run("secrets", "set", "big", "--raw", "--force", "--tier", "open", input=b"\x01" * size)
    err = one_line_error(result, 2)
    assert "larger than 1048576 bytes; nothing was stored" in err
    got = tree.as_agent("broker", "get", "big")
    if existing is None:
        one_line_error(got, 4)
    else:
        assert got.stdout == existing
    assert [p for p in os.listdir(tree.state / "secrets") if p.startswith(".")] == []  # no temp left behind


def test_import_round_trips_files_byte_for_byte(tree, tmp_path):
    sources = {"pem-key": PEM, "bin": VALUES["binary with NULs"], "empty": b""}
    for name, value in sources.items():
        (tmp_path / name).write_bytes(value)
    result = tree.run("secrets", "import", "--tier", "open", *(str(tmp_path / n) for n in sources))
    assert result.returncode == 0, result.stderr
    for name, value in sources.items():
        assert tree.as_agent("broker", "get", name).stdout == value
