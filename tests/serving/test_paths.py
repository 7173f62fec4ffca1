"""Path confinement: a typed path is used only inside the allowed folders (real files, real links)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from messages import one_sentence

from ssn3d.serving.paths import UnsafePathError, is_inside, resolve_inside
from ssn3d.serving.workspace import Workspace


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """data/ (allowed), data/walkers/0001/f.jpg, secret/ (not allowed), links in and out of data/."""
    data, secret = tmp_path / "data", tmp_path / "secret"
    (data / "walkers" / "0001").mkdir(parents=True)
    (data / "walkers" / "0001" / "f.jpg").write_bytes(b"x")
    secret.mkdir()
    (secret / "key.txt").write_text("top secret")
    (data / "escape").symlink_to(secret)
    (data / "alias").symlink_to(data / "walkers")
    (tmp_path / "data2").mkdir()  # shares a prefix with data/
    (data / "loop_a").symlink_to(data / "loop_b")
    (data / "loop_b").symlink_to(data / "loop_a")
    return {"root": tmp_path, "data": data, "secret": secret}


def test_relative_and_absolute_paths_inside_a_root_are_resolved(tree):
    data = tree["data"]
    assert resolve_inside("walkers/0001", [data]) == (data / "walkers" / "0001").resolve()
    assert resolve_inside(str(data / "walkers"), [data]) == (data / "walkers").resolve()
    assert (
        resolve_inside("alias/0001/f.jpg", [data], must_exist=True) == (data / "walkers/0001/f.jpg").resolve()
    )


@pytest.mark.parametrize(
    "typed, words",
    [
        ("../secret/key.txt", "'..'"),
        ("walkers/../walkers", "'..'"),  # refused even though it would stay inside
        ("escape/key.txt", "symbolic link"),
        ("", "not a usable path"),
        ("walkers/\x00", "not a usable path"),
        ("loop_a/x", "cannot be resolved"),
        ("~no-such-user-here/x", "unknown home folder"),
    ],
)
def test_paths_that_leave_the_roots_are_refused_with_one_sentence(tree, typed, words):
    with pytest.raises(UnsafePathError) as err:
        resolve_inside(typed, [tree["data"]], what="dataset root")
    assert words in str(err.value) and "dataset root" in str(err.value)
    assert one_sentence(str(err.value))


def test_absolute_paths_outside_and_prefix_siblings_are_refused(tree):
    for outside in (tree["secret"] / "key.txt", tree["root"] / "data2", Path("/")):
        with pytest.raises(UnsafePathError, match="outside the allowed folders"):
            resolve_inside(outside, [tree["data"]])
        assert not is_inside(outside, [tree["data"]])


def test_second_root_and_missing_paths(tree):
    assert (
        resolve_inside(tree["secret"] / "key.txt", [tree["data"], tree["secret"]]).read_text() == "top secret"
    )
    with pytest.raises(FileNotFoundError, match="does not exist"):
        resolve_inside("walkers/nope", [tree["data"]], must_exist=True)
    with pytest.raises(UnsafePathError, match="no allowed folders"):
        resolve_inside("walkers", [])


def test_workspace_roots_confine_datasets(tree, monkeypatch):
    ws = Workspace.from_env({"SSN3D_HOME": str(tree["root"]), "SSN3D_DATA_ROOTS": str(tree["secret"])})
    assert resolve_inside(tree["secret"] / "key.txt", ws.allowed_roots).is_file()
    with pytest.raises(UnsafePathError):
        resolve_inside(tree["root"] / "data2", ws.allowed_roots)
    ws_plain = Workspace.from_env({"SSN3D_HOME": str(tree["root"])})
    with pytest.raises(UnsafePathError):
        resolve_inside(tree["secret"] / "key.txt", ws_plain.allowed_roots)


_PARTS = st.sampled_from(
    [
        "walkers",
        "0001",
        "f.jpg",
        "..",
        ".",
        "escape",
        "alias",
        "data",
        "secret",
        "~",
        "~nobody-here",
        "loop_a",
        "x y",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(_PARTS, max_size=6), absolute=st.booleans())
def test_property_any_accepted_path_lies_inside_the_roots(tree, parts, absolute):
    typed = ("/" if absolute else "") + "/".join(parts)
    if absolute:
        typed = str(tree["root"]) + typed
    try:
        out = resolve_inside(typed, [tree["data"]])
    except (UnsafePathError, FileNotFoundError):
        return
    assert out.is_relative_to(tree["data"].resolve())
    assert os.path.realpath(out) == str(out)
