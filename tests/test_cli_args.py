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
