"""hear_gram.cli: the one command-line convention (exit codes, one-line errors, safe inputs)."""

import json
import logging
import subprocess
import sys
import textwrap

import pytest

from hear_gram import cli

PROG = "python -m toy"


def _parser():
    p = cli.parser(PROG, "toy tool")
    cli.add_weights(p)
    cli.add_out(p, required=False)
    cli.add_model_options(p)
    cli.add_seed(p)
    p.add_argument("--fail", default="")
    return p


def _body(args):
    if args.fail == "value":
        raise ValueError("bad value\nover two lines")
    if args.fail == "interrupt":
        raise KeyboardInterrupt
    if args.fail == "bug":
        raise TypeError("a bug")
    if args.fail == "json":
        cli.loads_json("[" * 100_000 + "]" * 100_000, "the input")
    logging.getLogger("toy").info("details")
    return 3 if args.fail == "code" else None


def _run(argv, capsys):
    code = cli.main(PROG, _parser, _body, argv, log_dir=lambda a: a.out)
    err = capsys.readouterr().err
    return code, [ln for ln in err.splitlines() if ln.strip()]


@pytest.mark.parametrize(
    "argv, code, start",
    [
        (["--fail", "value"], 2, f"{PROG}: error: bad value over two lines"),
        (["--fail", "json"], 2, f"{PROG}: error: the input nests deeper than"),
        (["--fail", "interrupt"], 130, f"{PROG}: interrupted"),
        (["--fail", "bug"], 1, f"{PROG}: internal error: TypeError: a bug"),
        (["--seed", "x"], 2, f"{PROG}: error: argument --seed"),
        (["--seed", "-1"], 2, f"{PROG}: error: argument --seed"),
        (["--model-options", "[1]"], 2, f"{PROG}: error: argument --model-options"),
        (["--model-options", "{" * 5000], 2, f"{PROG}: error: argument --model-options"),
        (["--model-options", '{"a": NaN}'], 2, f"{PROG}: error: argument --model-options"),
    ],
)
def test_every_failure_is_one_line_with_its_exit_status(argv, code, start, capsys, tmp_path):
    def run():
        return _run([*argv, "--out", str(tmp_path)], capsys)

    if code == 2 and argv[0] != "--fail":
        with pytest.raises(SystemExit) as e:  # argparse's own errors
            run()
        assert e.value.code == 2
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    else:
        got, lines = run()
        assert got == code
    assert len(lines) == 1, lines
    assert lines[0].startswith(start), lines


def test_success_returns_the_body_status_and_logs_details_to_the_output(capsys, tmp_path):
    code, lines = _run(["--out", str(tmp_path), "--fail", "code"], capsys)
    assert code == 3 and lines == []
    log = (tmp_path / "logs" / "toy.log").read_text()
    assert "details" in log  # INFO reaches the file, not the terminal


def test_a_bug_keeps_its_traceback_in_the_log(capsys, tmp_path):
    code, lines = _run(["--out", str(tmp_path), "--fail", "bug"], capsys)
    assert code == 1 and str(tmp_path / "logs" / "toy.log") in lines[0]
    assert "Traceback" in (tmp_path / "logs" / "toy.log").read_text()


def test_weights_takes_model_as_its_old_name(tmp_path):
    args = _parser().parse_args(["--model", "w.safetensors"])
    assert str(args.weights) == "w.safetensors"


def test_json_inputs_refuse_depth_constants_and_size(tmp_path):
    assert cli.loads_json('{"a": [1, {"b": 2}]}', "x") == {"a": [1, {"b": 2}]}
    deep = "[" * 33 + "]" * 33
    with pytest.raises(cli.CLIError, match="deeper than 32"):
        cli.loads_json(deep, "x")
    with pytest.raises(cli.CLIError, match="not JSON"):
        cli.loads_json('{"a": Infinity}', "x")
    with pytest.raises(cli.CLIError, match="not JSON"):
        cli.loads_json("{", "x")
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (cli.MAX_CONFIG_BYTES + 1))
    with pytest.raises(cli.CLIError, match="over"):
        cli.read_json(big)


def test_toml_inputs_refuse_depth_and_bad_text(tmp_path):
    ok = tmp_path / "ok.toml"
    ok.write_text('[[model]]\nname = "a"\n')
    assert cli.read_toml(ok) == {"model": [{"name": "a"}]}
    deep = tmp_path / "deep.toml"
    deep.write_text("a = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(cli.CLIError, match="deeper than"):
        cli.read_toml(deep)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"a = \xff\n")
    with pytest.raises(cli.CLIError, match="not TOML"):
        cli.read_toml(bad)


def test_expect_names_what_was_wanted_and_refuses_bool_as_number():
    assert cli.expect(3, int, "n") == 3
    with pytest.raises(cli.CLIError, match="n must be int, got bool"):
        cli.expect(True, int, "n")
    with pytest.raises(cli.CLIError, match="finite"):
        cli.expect(float("nan"), float, "x")
    with pytest.raises(cli.CLIError, match="must be str or list, got dict"):
        cli.expect({}, (str, list), "v")


def test_ctrl_c_in_a_real_process_exits_130_with_one_line(tmp_path):
    # A real SIGINT, delivered while the body runs, not only a raised KeyboardInterrupt.
    script = tmp_path / "toy.py"
    script.write_text(
        textwrap.dedent("""
        import sys, time
        from hear_gram import cli
        def body(args):
            print("ready", flush=True)
            time.sleep(30)
        sys.exit(cli.main("toy", lambda: cli.parser("toy", None), body, []))
    """)
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)  # fmt: skip
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(2)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130
    assert [ln for ln in err.splitlines() if ln.strip()] == ["toy: interrupted"]


def test_shard_and_counts_parse_or_refuse():
    import argparse

    assert cli.shard("1/4") == (1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(argparse.ArgumentTypeError):
            cli.shard(bad)
    assert cli.positive_int("2") == 2
    with pytest.raises(argparse.ArgumentTypeError):
        cli.positive_int("0")
    assert json.loads(json.dumps(cli.json_object('{"a": 1}'))) == {"a": 1}


def test_an_absurdly_long_value_is_echoed_short(capsys):
    with pytest.raises(SystemExit):
        _parser().parse_args(["--seed", "9" * 5000])
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and len(err) < 400 and "(5" in err
