"""Editing `datasource-properties.json` through the mount (SPEC.md section 4).

Valid edits, whatever tool makes them (sed -i, vim, a Python rewrite, shell `>`, cp over it,
mv over it), replace the file on disk and the view follows at once. Invalid ones are refused (the
close or rename fails), the file on disk stays byte-for-byte as it was, and the reason (naming the
file and the field) appears in `.wkfs/errors`. Editor temporary and backup files in the mount
root live in memory only.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

import mounthelp as mh

NAME = "wk433_color_uint8_raw"  # scale factor [11.24, 11.24, 28.0], one layer "color"
PROPS = "datasource-properties.json"


@pytest.fixture
def ds(dataset_copy) -> Path:
    return dataset_copy(NAME)


def errors_text(mountpoint: Path) -> str:
    return (mountpoint / ".wkfs" / "errors").read_text(errors="replace")


def root_names(mountpoint: Path) -> set[str]:
    return set(os.listdir(mountpoint))


def scale_of(props: dict) -> list[float]:
    s = props["scale"]
    return list(s["factor"] if isinstance(s, dict) else s)


def check_valid_edit(ds: Path, mountpoint: Path, expect_scale: list[float], names_before: set[str],
                     disk_before: set[str]) -> None:
    """The edit is on disk, the view shows the same bytes, and nothing was left behind."""
    on_disk = (ds / PROPS).read_bytes()
    assert scale_of(json.loads(on_disk)) == expect_scale, on_disk.decode()
    assert (mountpoint / PROPS).read_bytes() == on_disk, "the view does not show the file on disk"
    assert root_names(mountpoint) == names_before, "an editor's temporary file stayed in the view"
    assert set(os.listdir(ds)) == disk_before, f"files appeared in the dataset: {set(os.listdir(ds)) - disk_before}"


def check_refused(ds: Path, mountpoint: Path, old: bytes, errors_before: str, *fields: str) -> None:
    """The file on disk and in the view is the old one; the reason is in .wkfs/errors."""
    assert (ds / PROPS).read_bytes() == old, "a refused edit changed the file on disk"
    assert (mountpoint / PROPS).read_bytes() == old, "the view shows a refused edit"
    after = errors_text(mountpoint)
    assert after != errors_before and len(after) > len(errors_before), ".wkfs/errors did not grow"
    new = after[len(errors_before):] if after.startswith(errors_before) else after
    assert PROPS in new, f".wkfs/errors does not name the file: {new!r}"
    for f in fields:
        assert f.lower() in new.lower(), f".wkfs/errors does not name {f!r}: {new!r}"


def edited(old: bytes, fn) -> bytes:
    props = json.loads(old)
    fn(props)
    return json.dumps(props, indent=4).encode()


def set_scale(z: float):
    def fn(props):
        props["scale"]["factor"][2] = z

    return fn


def wk_voxel_size(ds: Path):
    import webknossos as wk

    return tuple(wk.Dataset.open(ds).voxel_size)


# ------------------------------------------------------------------------------------------
# Valid edits


def test_sed_in_place(ds, mounted, mountpoint):
    with mounted(ds):
        names, disk = root_names(mountpoint), set(os.listdir(ds))
        r = mh.run(["sed", "-i", "s/28\\.0/30.5/", mountpoint / PROPS])
        assert r.returncode == 0, mh.describe(r)
        check_valid_edit(ds, mountpoint, [11.24, 11.24, 30.5], names, disk)
        r = mh.run(["sed", "-i", "-e", "s/30\\.5/31.0/", "-e", "s/\"team\": \"\"/\"team\": \"lab\"/",
                    mountpoint / PROPS])
        assert r.returncode == 0, mh.describe(r)
        check_valid_edit(ds, mountpoint, [11.24, 11.24, 31.0], names, disk)
        assert json.loads((ds / PROPS).read_text())["id"]["team"] == "lab"
    assert wk_voxel_size(ds) == (11.24, 11.24, 31.0)


@pytest.mark.parametrize("backupcopy", ["no", "yes"])
def test_vim(backupcopy, ds, mounted, mountpoint, tmp_path):
    """vim -Es: with backupcopy=no it renames the file away and writes a new one; swap files."""
    if shutil.which("vim") is None:
        pytest.skip("vim is not installed")
    env = dict(os.environ, HOME=str(tmp_path), TERM="dumb")
    with mounted(ds):
        names, disk = root_names(mountpoint), set(os.listdir(ds))
        r = mh.run(["vim", "-Es", "-i", "NONE", "-c", f"set nocompatible writebackup nobackup backupcopy={backupcopy}",
                    "-c", "%s/28\\.0/29.25/", "-c", "wq", mountpoint / PROPS], input=b"", env=env, timeout=30)
        assert r.returncode == 0, mh.describe(r)
        check_valid_edit(ds, mountpoint, [11.24, 11.24, 29.25], names, disk)


def test_python_rewrite(ds, mounted, mountpoint):
    """Rewrite in place (O_TRUNC); unknown fields survive; the view follows at once."""
    with mounted(ds):
        names, disk = root_names(mountpoint), set(os.listdir(ds))
        props = json.loads((mountpoint / PROPS).read_text())
        props["scale"]["factor"] = [5.0, 6.0, 7.0]
        props["myToolSettings"] = {"kept": [1, 2, 3], "nested": {"a": None}}
        props["dataLayers"][0]["defaultViewConfiguration"] = {"color": [255, 0, 0]}
        with open(mountpoint / PROPS, "w") as f:
            json.dump(props, f, indent=2)
        check_valid_edit(ds, mountpoint, [5.0, 6.0, 7.0], names, disk)
        seen = json.loads((mountpoint / PROPS).read_text())
        assert seen["myToolSettings"] == {"kept": [1, 2, 3], "nested": {"a": None}}
        assert seen["dataLayers"][0]["defaultViewConfiguration"] == {"color": [255, 0, 0]}
    assert wk_voxel_size(ds) == (5.0, 6.0, 7.0)


def test_shell_redirect(ds, mounted, mountpoint, tmp_path):
    new = tmp_path / "new.json"
    with mounted(ds):
        names, disk = root_names(mountpoint), set(os.listdir(ds))
        new.write_bytes(edited((ds / PROPS).read_bytes(), set_scale(12.0)))
        r = mh.sh(f"cat '{new}' > '{mountpoint / PROPS}'")
        assert r.returncode == 0, mh.describe(r)
        check_valid_edit(ds, mountpoint, [11.24, 11.24, 12.0], names, disk)


def test_cp_over(ds, mounted, mountpoint, tmp_path):
    new = tmp_path / "new.json"
    with mounted(ds):
        names, disk = root_names(mountpoint), set(os.listdir(ds))
        new.write_bytes(edited((ds / PROPS).read_bytes(), set_scale(13.0)))
        r = mh.run(["cp", new, mountpoint / PROPS])
        assert r.returncode == 0, mh.describe(r)
        check_valid_edit(ds, mountpoint, [11.24, 11.24, 13.0], names, disk)


def test_mv_over_from_outside(ds, mounted, mountpoint, tmp_path):
    """Across file systems mv unlinks the destination, creates it anew (O_EXCL) and copies."""
    new = tmp_path / "new.json"
    with mounted(ds):
        names, disk = root_names(mountpoint), set(os.listdir(ds))
        new.write_bytes(edited((ds / PROPS).read_bytes(), set_scale(14.0)))
        r = mh.run(["mv", new, mountpoint / PROPS])
        assert r.returncode == 0, mh.describe(r)
        check_valid_edit(ds, mountpoint, [11.24, 11.24, 14.0], names, disk)
        assert not new.exists()


def test_mv_over_within_the_mount(ds, mounted, mountpoint):
    """Write a temporary file in the mount root, then rename it over the properties."""
    with mounted(ds):
        names, disk = root_names(mountpoint), set(os.listdir(ds))
        tmp = mountpoint / f"{PROPS}.tmp"
        tmp.write_bytes(edited((mountpoint / PROPS).read_bytes(), set_scale(15.0)))
        assert tmp.exists() and not (ds / tmp.name).exists(), "a temporary file reached the dataset"
        r = mh.run(["mv", tmp, mountpoint / PROPS])
        assert r.returncode == 0, mh.describe(r)
        check_valid_edit(ds, mountpoint, [11.24, 11.24, 15.0], names, disk)


@pytest.mark.parametrize("valid", [True, False], ids=["valid", "invalid"])
def test_rename_away_then_create(valid, ds, mounted, mountpoint):
    """What vim (backupcopy=no) and emacs do: rename the file to a backup, write a new file."""
    old = (ds / PROPS).read_bytes()
    new = edited(old, set_scale(16.0) if valid else bad_category)
    with mounted(ds):
        names, disk = root_names(mountpoint), set(os.listdir(ds))
        before = errors_text(mountpoint)
        os.rename(mountpoint / PROPS, mountpoint / f"{PROPS}~")
        # The backup lives in memory; the dataset keeps its properties file meanwhile.
        assert (ds / PROPS).read_bytes() == old, "renaming the properties away changed the dataset"
        assert not (ds / f"{PROPS}~").exists()
        assert (mountpoint / f"{PROPS}~").read_bytes() == old
        fd = os.open(mountpoint / PROPS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.write(fd, new)
        code = mh.oserror_errno(os.close, fd)
        if valid:
            assert code is None, f"close of a valid new properties file: {mh.errno_name(code)}"
        else:
            assert code in mh.BAD_PROPERTIES_ERRNOS, f"close of a bad new file: {mh.errno_name(code)}"
        os.unlink(mountpoint / f"{PROPS}~")
        if valid:
            check_valid_edit(ds, mountpoint, [11.24, 11.24, 16.0], names, disk)
        else:
            assert (ds / PROPS).read_bytes() == old, "a refused file changed the dataset"
            after = errors_text(mountpoint)
            assert len(after) > len(before) and "category" in after[len(before):].lower()
            if (mountpoint / PROPS).exists():
                assert (mountpoint / PROPS).read_bytes() == old
    assert (ds / PROPS).read_bytes() == (new if valid else old)


def test_emacs_lock_symlink_lives_in_memory(ds, mounted, mountpoint):
    """Emacs locks a file with a symlink `.#NAME -> user@host.pid:time` next to it."""
    lock = mountpoint / f".#{PROPS}"
    with mounted(ds):
        disk = mh.snapshot(ds)
        os.symlink("root@host.1234:1700000000", lock)
        assert os.readlink(lock) == "root@host.1234:1700000000"
        assert mh.snapshot(ds) == disk, "the lock link reached the dataset"
        assert [l["name"] for l in mh.load_properties(ds)["dataLayers"]] == ["color"]
        os.unlink(lock)
        assert not os.path.lexists(lock)
    assert mh.snapshot(ds) == disk


def test_editor_files_live_in_memory(ds, mounted, mountpoint):
    names = [".datasource-properties.json.swp", f"{PROPS}~", "4913", "sedAb12Cd", f".#{PROPS}",
             f"#{PROPS}#", "notes.txt"]
    with mounted(ds):
        disk = mh.snapshot(ds)
        for n in names:
            p = mountpoint / n
            with open(p, "wb") as f:
                f.write(n.encode() * 100)
            assert p.read_bytes() == n.encode() * 100, p
            assert n in os.listdir(mountpoint)
            assert not (ds / n).exists(), f"{n} reached the dataset"
        os.rename(mountpoint / "notes.txt", mountpoint / "notes2.txt")
        assert (mountpoint / "notes2.txt").read_bytes() == b"notes.txt" * 100
        os.unlink(mountpoint / "4913")
        assert not (mountpoint / "4913").exists()
        assert mh.snapshot(ds) == disk
    with mounted(ds):
        left = set(names + ["notes2.txt"]) & set(os.listdir(mountpoint))
        assert not left, f"temporary files survived the unmount: {left}"
    assert mh.snapshot(ds) == disk


def test_added_layer_entry_appears(ds, mounted, mountpoint):
    """A layer entry added by hand makes its directory and mags appear (and exist on disk)."""
    with mounted(ds):
        props = json.loads((mountpoint / PROPS).read_text())
        layer = json.loads(json.dumps(props["dataLayers"][0]))
        layer["name"] = "color2"
        layer["mags"] = [dict(m, path="./color2/" + m["path"].rsplit("/", 1)[-1])
                         for m in layer["mags"] if m["path"].endswith("/1")]
        props["dataLayers"].append(layer)
        with open(mountpoint / PROPS, "w") as f:
            json.dump(props, f, indent=4)
        assert (mountpoint / "color2").is_dir(), "the new layer's directory did not appear"
        assert (mountpoint / "color2" / "1").is_dir()
        assert (mountpoint / "color2" / "1" / "mag.json").is_file()
        assert (ds / "color2" / "1" / "header.wkw").is_file(), "the new mag was not created on disk"
        # The new layer takes writes like any other.
        h = mh.read_header(ds / "color2" / "1" / "header.wkw")
        side = h["side"]
        (mountpoint / "color2" / "1" / "z1" / "y0").mkdir(parents=True)
        data = bytes(range(256)) * (mh.cube_bytes(h) // 256)
        (mountpoint / "color2" / "1" / "z1" / "y0" / "x0.raw").write_bytes(data)
    assert mh.wkw_read_cube(ds / "color2" / "1", (0, 0, 1)).tobytes() == data
    layer = mh.layer_entry(mh.load_properties(ds), "color2")
    assert mh.bbox_covers(layer, (0, 0, side), (side, side, side))


# ------------------------------------------------------------------------------------------
# Invalid edits: refused, the file on disk unchanged, the reason in .wkfs/errors


def bad_category(props):
    props["dataLayers"][0]["category"] = "colour"


def test_python_invalid_json_refused(ds, mounted, mountpoint):
    old = (ds / PROPS).read_bytes()
    with mounted(ds):
        before = errors_text(mountpoint)
        f = open(mountpoint / PROPS, "w")
        f.write('{"id": {"name": "x", "team": ""}, "dataLayers": [')
        code = mh.oserror_errno(f.close)
        assert code in mh.BAD_PROPERTIES_ERRNOS, f"close of invalid JSON: {mh.errno_name(code)}"
        check_refused(ds, mountpoint, old, before)


def test_python_bad_category_refused(ds, mounted, mountpoint):
    old = (ds / PROPS).read_bytes()
    with mounted(ds):
        before = errors_text(mountpoint)
        data = edited(old, bad_category)
        fd = os.open(mountpoint / PROPS, os.O_WRONLY | os.O_TRUNC)
        os.write(fd, data)
        code = mh.oserror_errno(os.close, fd)
        assert code in mh.BAD_PROPERTIES_ERRNOS, f"close with a bad category: {mh.errno_name(code)}"
        check_refused(ds, mountpoint, old, before, "category")


def test_sed_bad_category_refused(ds, mounted, mountpoint):
    old = (ds / PROPS).read_bytes()
    with mounted(ds):
        before = errors_text(mountpoint)
        names = root_names(mountpoint)
        r = mh.run(["sed", "-i", 's/"category": "color"/"category": "colour"/', mountpoint / PROPS])
        assert r.returncode != 0, f"sed -i with a bad category succeeded\n{mh.describe(r)}"
        check_refused(ds, mountpoint, old, before, "category")
        assert set(os.listdir(ds)) == {PROPS, "color"}
        leftover = root_names(mountpoint) - names
        assert all(n.startswith("sed") for n in leftover), leftover


def test_shell_redirect_invalid_refused(ds, mounted, mountpoint):
    """bash does not check close(); the data must still be safe and the error recorded."""
    old = (ds / PROPS).read_bytes()
    with mounted(ds):
        before = errors_text(mountpoint)
        mh.sh(f"echo 'not json' > '{mountpoint / PROPS}'")
        check_refused(ds, mountpoint, old, before)


def test_cp_over_invalid_refused(ds, mounted, mountpoint, tmp_path):
    old = (ds / PROPS).read_bytes()
    bad = tmp_path / "bad.json"
    bad.write_bytes(edited(old, bad_category))
    with mounted(ds):
        before = errors_text(mountpoint)
        r = mh.run(["cp", bad, mountpoint / PROPS])
        assert r.returncode != 0, f"cp of a bad properties file succeeded\n{mh.describe(r)}"
        check_refused(ds, mountpoint, old, before, "category")


def test_mv_over_invalid_refused(ds, mounted, mountpoint, tmp_path):
    old = (ds / PROPS).read_bytes()
    with mounted(ds):
        before = errors_text(mountpoint)
        tmp = mountpoint / "new.json"
        tmp.write_bytes(b"{ broken")
        r = mh.run(["mv", tmp, mountpoint / PROPS])
        assert r.returncode != 0, f"mv of invalid JSON over the properties succeeded\n{mh.describe(r)}"
        check_refused(ds, mountpoint, old, before)
        # From outside the mount (unlink, then create and copy).
        outside = tmp_path / "bad.json"
        outside.write_bytes(edited(old, bad_category))
        before = errors_text(mountpoint)
        r = mh.run(["mv", outside, mountpoint / PROPS])
        assert r.returncode != 0, f"mv of a bad file from outside succeeded\n{mh.describe(r)}"
        check_refused(ds, mountpoint, old, before, "category")


@pytest.mark.parametrize("change,field", [
    (lambda p: p["dataLayers"][0].__setitem__("name", "../escape"), "name|escape"),
    (lambda p: p["dataLayers"][0]["mags"][0].__setitem__("path", "../../outside/1"), "path|outside"),
    (lambda p: p["dataLayers"][0].__setitem__("elementClass", "uint7"), "elementClass"),
    (lambda p: p["dataLayers"][0]["boundingBox"].__setitem__("width", -5), "boundingBox|width"),
    (lambda p: p.__setitem__("dataLayers", "color"), "dataLayers"),
], ids=["layer-name-escapes", "mag-path-escapes", "bad-element-class", "negative-box", "layers-not-a-list"])
def test_other_invalid_edits_refused(change, field, ds, mounted, mountpoint):
    old = (ds / PROPS).read_bytes()
    with mounted(ds):
        before = errors_text(mountpoint)
        data = edited(old, change)
        fd = os.open(mountpoint / PROPS, os.O_WRONLY | os.O_TRUNC)
        os.write(fd, data)
        code = mh.oserror_errno(os.close, fd)
        assert code in mh.BAD_PROPERTIES_ERRNOS, f"close with a bad {field}: {mh.errno_name(code)}"
        check_refused(ds, mountpoint, old, before)
        new = errors_text(mountpoint)[len(before):].lower()
        assert any(f.lower() in new for f in field.split("|")), f".wkfs/errors does not name {field}: {new!r}"
        assert not (ds.parent / "escape").exists() and not (ds.parent.parent / "outside").exists()
    assert (ds / PROPS).read_bytes() == old


# ------------------------------------------------------------------------------------------
# Edits made from a text the file has left behind


@pytest.mark.parametrize("change", ["add-mag", "add-layer", "write growing the box"])
@pytest.mark.parametrize("tool", ["python", "sed"])
def test_an_edit_made_from_an_older_text_is_refused(change, tool, ds, mounted, mountpoint):
    """A program reads the properties through the mount, another program changes the dataset
    (`wkfs add-mag`, `add-layer`, a `write` past the box), then the first saves its whole text
    with one field changed: saving it would undo the other change (the new mag or layer gone
    from the properties while its directory stays, the box shrunk off written voxels), and it
    was accepted. It is refused with EAGAIN, naming the file; after reading the file again, the
    same edit is saved and keeps the other change. Another program's read (`cat`) and the
    program's own second read before saving (vim's backup copy) leave its text old."""
    import errno
    import subprocess

    with mounted(ds):
        props = mountpoint / PROPS
        stale = props.read_bytes()
        args = {"add-mag": ["add-mag", ds, "color", "8"],
                "add-layer": ["add-layer", ds, "extra", "--category", "color", "--dtype", "uint8"],
                "write growing the box": ["write", ds, "color", "1", "--offset", "1000,0,0", "--size", "8,8,8"]}[change]
        r = mh.run([mh.WKFS_BIN, *args], input=bytes(512) if change.startswith("write") else None)
        assert r.returncode == 0, mh.describe(r)
        changed = (ds / PROPS).read_bytes()
        errors_before = errors_text(mountpoint)
        # Another program reading the new text does not make this one's text new.
        r = mh.run(["cat", props])
        assert r.returncode == 0 and r.stdout == changed, mh.describe(r)
        if tool == "python":
            # vim reads the file again just before it overwrites it (its backup copy): a read
            # after the program's first does not make its older text new.
            assert props.read_bytes() == changed
            with pytest.raises(OSError) as failure:
                with open(props, "wb") as f:
                    f.write(edited(stale, set_scale(30.0)))
            assert failure.value.errno == errno.EAGAIN, failure.value
            # vim's in-place save: open for writing only, truncate, write (an open that reads
            # nothing does not count as reading the file).
            fd = os.open(props, os.O_WRONLY | os.O_CREAT)
            os.ftruncate(fd, 0)
            os.write(fd, edited(stale, set_scale(30.0)))
            with pytest.raises(OSError) as failure:
                os.close(fd)
            assert failure.value.errno == errno.EAGAIN, failure.value
        else:
            # sed reads the file itself: its text is the new one, and its edit is kept.
            r = mh.run(["sed", "-i", "s/28.0/30.0/", props])
            assert r.returncode == 0, mh.describe(r)
            assert json.loads((ds / PROPS).read_bytes()) == json.loads(changed.replace(b"28.0", b"30.0"))
            return
        assert (ds / PROPS).read_bytes() == changed, "a refused edit changed the file on disk"
        assert PROPS in errors_text(mountpoint)[len(errors_before):]
        # Refused again until the file is read again; then the edit is saved over the new text.
        with pytest.raises(OSError):
            with open(props, "wb") as f:
                f.write(edited(stale, set_scale(30.0)))
        fresh = props.read_bytes()
        assert fresh == changed
        with open(props, "wb") as f:
            f.write(edited(fresh, set_scale(30.0)))
        saved = json.loads((ds / PROPS).read_bytes())
        assert scale_of(saved) == [11.24, 11.24, 30.0]
        assert json.loads(changed)["dataLayers"] == saved["dataLayers"]


def test_a_shell_edit_is_made_from_what_its_children_read(ds, mounted, mountpoint):
    """`t=$(cat F)`, another program grows the box, `echo "$t" > F`: the shell read nothing
    itself, its child did; the save is refused (EAGAIN; bash does not report a failed close)
    and the box stays, also when yet another program reads the file in between."""
    with mounted(ds):
        props = mountpoint / PROPS
        script = f"""
            t=$(cat {props})
            head -c 512 /dev/zero | {mh.WKFS_BIN} write {ds} color 1 --offset 1000,0,0 --size 8,8,8 || exit 9
            cat {props} > /dev/null
            echo "${{t/28.0/30.0}}" > {props}
        """
        r = mh.run(["bash", "-c", script])
        assert r.returncode != 9, mh.describe(r)
        saved = json.loads((ds / PROPS).read_bytes())
        assert scale_of(saved)[2] == 28.0, "the shell's older text was saved"
        box = saved["dataLayers"][0]["boundingBox"]
        assert box["topLeft"][0] + box["width"] >= 1008, box


def test_a_program_that_reads_again_after_a_change_saves(ds, mounted, mountpoint):
    """A program that reads the file again after another program changed it, and edits that
    text, saves (a read-modify-write loop, vim's `:e!`): only a save that puts back what changed
    since its first read is refused (vim's backup copy reads the new text just before it writes
    its old buffer)."""
    with mounted(ds):
        props = mountpoint / PROPS
        for i, z in enumerate((30.0, 31.0, 32.0)):
            text = props.read_bytes()
            r = mh.run([mh.WKFS_BIN, "write", ds, "color", "1", "--offset", f"{1000 + 8 * i},0,0", "--size", "8,8,8"],
                       input=bytes(512))
            assert r.returncode == 0, mh.describe(r)
            fresh = props.read_bytes()
            assert fresh != text
            with open(props, "wb") as f:
                f.write(edited(fresh, set_scale(z)))
            saved = json.loads((ds / PROPS).read_bytes())
            assert scale_of(saved)[2] == z
            box = saved["dataLayers"][0]["boundingBox"]
            assert box["topLeft"][0] + box["width"] >= 1008 + 8 * i, box
