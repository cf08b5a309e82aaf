"""The users file of sign-in (fusion.users) and ``python -m fusion users``."""
import io
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fusion import users
from fusion.errors import InvalidInput

ROOT = Path(__file__).resolve().parent.parent
FAST = 4  # bcrypt cost for tests (the file accepts costs from 04 to 16)


def test_round_trip_keeps_only_hashes_in_a_private_file(tmp_path):
    path = tmp_path / "users"
    assert users.add_user(path, "alice", "correct horse", rounds=FAST) is False
    assert users.add_user(path, "bob.smith@lab", "pässwörd", rounds=FAST) is False
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "correct horse" not in text and "pässwörd" not in text
    found = users.read_users(path)
    assert list(found) == ["alice", "bob.smith@lab"]
    assert users.check_password(found["alice"], "correct horse")
    assert not users.check_password(found["alice"], "correct hors")
    assert users.check_password(found["bob.smith@lab"], "pässwörd")

    old = found["alice"]
    assert users.add_user(path, "alice", "new one", rounds=FAST) is True  # replaced, not added twice
    found = users.read_users(path)
    assert found["alice"] != old and users.check_password(found["alice"], "new one")
    assert not users.check_password(found["alice"], "correct horse")

    assert users.remove_user(path, "alice") is True
    assert users.remove_user(path, "alice") is False
    assert list(users.read_users(path)) == ["bob.smith@lab"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["users"]  # no temporary files left behind


def test_comments_blank_lines_and_htpasswd_hashes_are_read(tmp_path):
    hashed = users.hash_password("pw", rounds=FAST).replace("$2b$", "$2y$")  # htpasswd -B writes $2y$
    path = tmp_path / "users"
    path.write_text(f"# lab users\n\ncarol:{hashed}\n")
    assert users.check_password(users.read_users(path)["carol"], "pw")
    assert users.read_users(tmp_path / "missing") == {}


@pytest.mark.parametrize("line, message", [
    ("alice", "line 2: expected 'user:bcrypt-hash'"),
    ("alice:secret", "line 2: the hash of 'alice' is not a bcrypt hash"),
    ("alice:$1$abc$def", "line 2: the hash of 'alice' is not a bcrypt hash"),
    ("alice:{hash17}", "line 2: the hash of 'alice' is not a bcrypt hash.*cost of 04 to 16"),
    ("al ice:{hash}", "line 2: user name 'al ice' is not allowed"),
    (":{hash}", "line 2: user name '' is not allowed"),
    ("bob:{hash}", "line 2: user 'bob' appears twice"),
])
def test_malformed_lines_are_refused_with_their_line_number(tmp_path, line, message):
    hashed = users.hash_password("pw", rounds=FAST)
    path = tmp_path / "users"
    path.write_text(f"bob:{hashed}\n{line.format(hash=hashed, hash17=hashed.replace('$04$', '$17$'))}\n")
    with pytest.raises(InvalidInput, match=f"users, {message}"):
        users.read_users(path)


@pytest.mark.parametrize("name", ["", "a:b", "a b", "-x", "x" * 65, "ünï", "a/b", "a\nb"])
def test_unsafe_user_names_are_refused(tmp_path, name):
    with pytest.raises(InvalidInput, match="is not allowed"):
        users.add_user(tmp_path / "users", name, "pw", rounds=FAST)
    assert not (tmp_path / "users").exists()


@pytest.mark.parametrize("password, message", [("", "empty"), ("x" * 73, "longer than 72 bytes"),
                                               ("a\0b", "NUL")])
def test_passwords_bcrypt_cannot_take_are_refused(tmp_path, password, message):
    with pytest.raises(InvalidInput, match=message):
        users.add_user(tmp_path / "users", "alice", password, rounds=FAST)
    assert not users.check_password(users.hash_password("pw", rounds=FAST), password)


def test_command_line_adds_a_user_with_the_password_from_stdin(tmp_path):
    path = tmp_path / "users"
    run = subprocess.run([sys.executable, "-m", "fusion", "users", "add", "dora", "--file", str(path)],
                         input="s3cret pass\n", capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert run.returncode == 0, run.stderr
    assert "added dora" in run.stdout
    assert "s3cret" not in path.read_text() and stat.S_IMODE(path.stat().st_mode) == 0o600
    assert users.check_password(users.read_users(path)["dora"], "s3cret pass")


def test_command_line_list_remove_and_refusals(tmp_path, monkeypatch, capsys):
    from fusion.__main__ import main

    path = tmp_path / "users"
    users.add_user(path, "erin", "pw", rounds=FAST)
    monkeypatch.setattr(sys, "stdin", io.StringIO("\n"))
    assert main(["users", "add", "frank", "--file", str(path)]) == 2  # an empty password
    assert "the password is empty" in capsys.readouterr().err
    assert main(["users", "add", "no:colons", "--file", str(path)]) == 2
    assert "is not allowed" in capsys.readouterr().err
    assert main(["users", "list", "--file", str(path)]) == 0
    assert capsys.readouterr().out.split() == ["erin"]
    assert main(["users", "remove", "erin", "--file", str(path)]) == 0
    assert main(["users", "remove", "erin", "--file", str(path)]) == 1
    assert "no user 'erin'" in capsys.readouterr().err
    assert users.read_users(path) == {}
