"""safepath's rule, on plain directories: which links a walk follows and which it refuses."""

import os

import pytest

from clawgate import safepath


@pytest.fixture
def tree(tmp_path):
    (tmp_path / "steady" / "real").mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared").chmod(0o1777)  # like /tmp: anyone may plant a link here
    (tmp_path / "steady" / "link").symlink_to(tmp_path / "steady" / "real")
    (tmp_path / "shared" / "link").symlink_to(tmp_path / "steady" / "real")
    return tmp_path


def walked(path, uid=None) -> str:
    folder = safepath.walk(str(path), os.getuid() if uid is None else uid)
    try:
        return os.path.realpath(f"/proc/self/fd/{folder.fd}") if os.path.isdir("/proc/self/fd") else folder.path
    finally:
        folder.close()


def test_follows_a_link_of_the_owner_in_a_steady_directory(tree):
    assert walked(tree / "steady" / "link").endswith("/steady/real")


def test_refuses_a_link_in_a_directory_others_can_write(tree):
    with pytest.raises(safepath.Refused, match="symbolic link another user could change"):
        walked(tree / "shared" / "link")


def test_refuses_a_link_owned_by_someone_else(tree):
    if os.getuid() == 0:
        pytest.skip("as root every link here is root's, which the rule trusts")
    with pytest.raises(safepath.Refused):
        walked(tree / "steady" / "link", uid=os.getuid() + 1)


def test_a_link_loop_is_refused_not_followed_forever(tree):
    (tree / "steady" / "loop").symlink_to("loop")
    with pytest.raises(safepath.Refused, match="too many"):
        walked(tree / "steady" / "loop")


def test_a_missing_component_is_an_os_error(tree):
    with pytest.raises(FileNotFoundError):
        walked(tree / "steady" / "nothing")


# -- read_file: a file the owner names (route add --ca) -------------------------------------------

def test_read_file_follows_a_steady_link_to_a_file_as_etc_ssl_certs_has_them(tree):
    (tree / "steady" / "real" / "ca.pem").write_bytes(b"PEM")
    (tree / "steady" / "ca-link.pem").symlink_to(tree / "steady" / "real" / "ca.pem")
    assert safepath.read_file(str(tree / "steady" / "ca-link.pem"), os.getuid(), 100) == b"PEM"


def test_read_file_refuses_a_link_planted_where_others_can_write(tree):
    (tree / "steady" / "real" / "ca.pem").write_bytes(b"PEM")
    (tree / "shared" / "ca.pem").symlink_to(tree / "steady" / "real" / "ca.pem")
    with pytest.raises(safepath.Refused, match="symbolic link another user could change"):
        safepath.read_file(str(tree / "shared" / "ca.pem"), os.getuid(), 100)


def test_read_file_refuses_a_fifo_and_a_file_over_its_limit(tree):
    os.mkfifo(tree / "steady" / "fifo")
    with pytest.raises(safepath.Refused, match="not a regular file"):
        safepath.read_file(str(tree / "steady" / "fifo"), os.getuid(), 100)
    (tree / "steady" / "big").write_bytes(b"x" * 101)
    with pytest.raises(safepath.Refused, match="larger than 100 bytes"):
        safepath.read_file(str(tree / "steady" / "big"), os.getuid(), 100)


def test_strict_reads_a_file_of_the_owners_through_a_sticky_directory_as_tmp_is(tree):
    (tree / "shared" / "mine").mkdir(mode=0o755)
    (tree / "shared" / "mine" / "ca.pem").write_bytes(b"PEM")
    assert safepath.read_file(str(tree / "shared" / "mine" / "ca.pem"), os.getuid(), 100, strict=True) == b"PEM"


def test_strict_refuses_a_directory_on_the_way_that_others_can_write(tree):
    (tree / "open").mkdir()
    (tree / "open").chmod(0o777)  # not sticky: anyone may rename what is in it
    (tree / "open" / "ca.pem").write_bytes(b"PEM")
    assert safepath.read_file(str(tree / "open" / "ca.pem"), os.getuid(), 100) == b"PEM"  # the loose rule reads it
    with pytest.raises(safepath.Refused, match="/open is a directory another user can change"):
        safepath.read_file(str(tree / "open" / "ca.pem"), os.getuid(), 100, strict=True)


def test_strict_refuses_a_file_others_can_write_or_that_is_not_the_owners(tree):
    (tree / "steady" / "ca.pem").write_bytes(b"PEM")
    (tree / "steady" / "ca.pem").chmod(0o666)
    with pytest.raises(safepath.Refused, match="another user can change it"):
        safepath.read_file(str(tree / "steady" / "ca.pem"), os.getuid(), 100, strict=True)
    (tree / "steady" / "ca.pem").chmod(0o644)
    if os.getuid() == 0:  # root's file is fine for any owner; another user's is not
        assert safepath.read_file(str(tree / "steady" / "ca.pem"), 12345, 100, strict=True) == b"PEM"
        os.chown(tree / "steady" / "ca.pem", 23456, -1)
        with pytest.raises(safepath.Refused, match="another user can change it"):
            safepath.read_file(str(tree / "steady" / "ca.pem"), 12345, 100, strict=True)
