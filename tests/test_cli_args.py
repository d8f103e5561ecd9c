"""The command lines' shared argument checks (``model/cli.py``): each bad value is one
``error: argument --flag: reason`` line and exit status 2, before any work."""

from __future__ import annotations

import argparse
import math

import pytest

from model import cli
from model.accel import AccelConfig


def parser():
    ap = argparse.ArgumentParser(prog="x")
    ap.add_argument("--config", type=cli.accel_config)
    ap.add_argument("--fmax", type=cli.positive_float)
    ap.add_argument("--tokens-in", type=cli.token_ids)
    ap.add_argument("--json", type=cli.output_file)
    ap.add_argument("--checkpoint", type=cli.existing_path)
    return ap


@pytest.mark.parametrize("args, message", [
    (["--config", "{bad"], "argument --config: not JSON"),
    (["--config", '{"rows": 0}'], "rows must be a positive int"),
    (["--config", '{"rows": 4, "colour": 1}'], "unknown AccelConfig field"),
    (["--config", "[1, 2]"], "expects a dict"),
    (["--config", "missing.json"], "cannot read missing.json"),
    (["--fmax", "-5"], "'-5': want a finite number > 0"),
    (["--fmax", "0"], "'0': want a finite number > 0"),
    (["--fmax", "nan"], "'nan': want a finite number > 0"),
    (["--fmax", "inf"], "'inf': want a finite number > 0"),
    (["--fmax", "fast"], "'fast' is not a number"),
    (["--tokens-in", "1,,x"], "want comma-separated token ids"),
    (["--tokens-in", ","], "no token ids"),
    (["--tokens-in", "1,-2"], "must be >= 0"),
    (["--json", "/no/such/dir/out.json"], "directory /no/such/dir does not exist"),
    (["--json", "/"], "is a directory"),
    (["--checkpoint", "/no/such/model"], "no such file or directory"),
])
def test_bad_arguments(capsys, args, message):
    with pytest.raises(SystemExit) as e:
        parser().parse_args(args)
    err = capsys.readouterr().err
    assert e.value.code == 2 and message in err and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("x: error: argument ")


def test_good_arguments(tmp_path):
    (tmp_path / "c.json").write_text('{"rows": 2, "cols": 8}')
    a = parser().parse_args(["--config", str(tmp_path / "c.json"), "--fmax", "48.5",
                             "--tokens-in", "1, 2,3", "--json", str(tmp_path / "o.json"),
                             "--checkpoint", str(tmp_path)])
    assert a.config == AccelConfig(rows=2, cols=8) and math.isclose(a.fmax, 48.5)
    assert a.tokens_in == [1, 2, 3] and a.json == tmp_path / "o.json"
    assert parser().parse_args(["--config", '{"rows": 3}']).config == AccelConfig(rows=3)


def test_serial_port(capsys, tmp_path):
    ap = argparse.ArgumentParser(prog="x")
    ap.add_argument("--port", type=cli.serial_port)
    (tmp_path / "f").write_text("x")
    for name, message in (("/no/such/tty", "/no/such/tty: no such device"),
                          (str(tmp_path / "f"), "is a regular file, not a serial device"),
                          (str(tmp_path), "is a directory, not a serial device"),
                          ("", "empty port name")):
        with pytest.raises(SystemExit) as e:
            ap.parse_args(["--port", name])
        err = capsys.readouterr().err
        assert e.value.code == 2 and message in err and "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("x: error: argument --port: ")
    # character devices pass (whether one is a terminal shows when it is opened), also by link
    (tmp_path / "link").symlink_to("/dev/null")
    assert ap.parse_args(["--port", "/dev/null"]).port == "/dev/null"
    assert ap.parse_args(["--port", str(tmp_path / "link")]).port == str(tmp_path / "link")


def test_prompt_text(capsys):
    ap = argparse.ArgumentParser(prog="x")
    ap.add_argument("--prompt", type=cli.prompt_text)
    for text, message in (("", "empty prompt"), ("a\udcff", "not encodable as UTF-8")):
        with pytest.raises(SystemExit) as e:
            ap.parse_args(["--prompt", text])
        err = capsys.readouterr().err
        assert e.value.code == 2 and "x: error: argument --prompt: " + message in err
    assert ap.parse_args(["--prompt", "And God said \u00e9"]).prompt == "And God said \u00e9"


def test_config_file_that_is_not_json_names_the_file(capsys, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"rows": 4,')
    with pytest.raises(SystemExit) as e:
        parser().parse_args(["--config", str(bad)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and f"argument --config: {bad}: not JSON" in err


def out_parser():
    ap = argparse.ArgumentParser(prog="x")
    ap.add_argument("--out", type=cli.output_dir)
    return ap


def test_output_dir_accepts_an_existing_or_creatable_directory(tmp_path):
    assert out_parser().parse_args(["--out", str(tmp_path)]).out == tmp_path
    deep = tmp_path / "a" / "b" / "c"
    assert out_parser().parse_args(["--out", str(deep)]).out == deep
    assert not (tmp_path / "a").exists()        # checked, not created


@pytest.mark.parametrize("name, message", [
    ("f", "f exists and is not a directory"),
    ("f/sub/dir", "f is not a directory"),
])
def test_output_dir_refuses_a_file_in_the_way(capsys, tmp_path, name, message):
    (tmp_path / "f").write_text("")
    with pytest.raises(SystemExit) as e:
        out_parser().parse_args(["--out", str(tmp_path / name)])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument --out: " in err and message in err
