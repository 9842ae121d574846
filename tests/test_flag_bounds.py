"""Every flag of `deit train`, `eval`, `export` and `data pack`, given absurd values: a one-line error naming the flag
(exit 2), or a value that means something; never a traceback, never a hang. The flags are read off the parsers,
so a flag added later is swept too (and a numeric one without a declared bound fails the first test)."""

from __future__ import annotations

import argparse
import contextlib
import io
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from deit.cli import build_parser, main
from deit.engine.config import config_from_args, load_yaml_settings, make_config
from deit.engine.preflight import resolve_data_set, validate_config
from deit.errors import DeitError
from deit.flag_bounds import Bound, bound_for, numeric_actions

COMMANDS = ("train", "eval", "export", "predict", "data")
SWEPT = ("train", "eval", "export", "data")
# inf, nan, huge (as a float, beyond float, as a whole number), negative, zero, fraction, empty, wrong type.
ABSURD = ("inf", "-inf", "nan", "1e309", "1e20", "100000000000000000000", "-1", "0", "0.5", "", "abc")
SECONDS_PER_CASE = 20


def _subparser(command: str) -> argparse.ArgumentParser:
    parser = build_parser(command)
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[command]


def _leaf_parsers(command: str) -> Iterator[tuple[list[str], argparse.ArgumentParser]]:
    """(argv prefix, parser) of each runnable command: `train`, ..., `data pack`."""
    stack = [([command], _subparser(command))]
    while stack:
        prefix, parser = stack.pop()
        nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not nested:
            yield prefix, parser
        for action in nested:
            stack.extend((prefix + [name], sub) for name, sub in action.choices.items())


@pytest.mark.parametrize("command", COMMANDS)
def test_every_numeric_flag_has_a_declared_bound(command: str) -> None:
    unbounded = [
        f"{path}: {'/'.join(action.option_strings)}"
        for path, action in numeric_actions(_subparser(command), command)
        if bound_for(path.split()[0], action.dest) is None
    ]
    assert not unbounded, f"declare their bounds in deit.flag_bounds.BOUNDS: {unbounded}"


@contextlib.contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    def hang(*_: object) -> None:
        raise TimeoutError(f"no answer in {seconds} s")

    previous = signal.signal(signal.SIGALRM, hang)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def _base_argv(prefix: list[str], checkpoint: Path, tmp: Path) -> dict[str, list[str]]:
    """The required flags of each command, with ordinary values (replaced when they are the flag swept)."""
    return {
        "train": {"--model": ["deit_tiny_patch16_224"]},
        "eval": {"--checkpoint": [str(checkpoint)]},
        "export": {"--checkpoint": [str(checkpoint)], "--format": ["torchscript"], "--output": [str(tmp / "m.pt")]},
        "data pack": {"--data-path": [str(tmp / "no_data")], "--output": [str(tmp / "shards")]},
    }[" ".join(prefix)]


def _outcome(
    prefix: list[str],
    parser: argparse.ArgumentParser,
    action: argparse.Action,
    value: str | None,
    checkpoint: Path,
    tmp: Path,
) -> tuple[str, str]:
    """('refused', message), ('accepted', '') or ('checked', message) for one flag and value."""
    flag = action.option_strings[0]
    argv = dict(_base_argv(prefix, checkpoint, tmp))
    argv[flag] = [] if value is None else [value]
    flat = prefix + [item for key, values in argv.items() for item in [key, *values]]
    stderr = io.StringIO()
    with _deadline(SECONDS_PER_CASE), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
                args = build_parser(prefix[0]).parse_args(flat)
        except DeitError as error:  # the parser's refusal: `deit` prints it on one line, exit 2
            return "refused", str(error)
        if prefix[0] != "train":
            return "accepted", ""
        try:
            validate_config(resolve_data_set(config_from_args(args)))
        except DeitError as error:
            return "checked", str(error)
    return "accepted", ""


def _names_the_flag(message: str, action: argparse.Action) -> bool:
    spellings = set(action.option_strings) | {"--" + action.dest.replace("_", "-"), "--" + action.dest}
    return any(spelling in message for spelling in spellings)


def test_every_flag_with_every_absurd_value_is_refused_in_one_line_or_means_something(tmp_path: Path) -> None:
    checkpoint = tmp_path / "checkpoint.pth"  # only parsed here, never opened
    cases = refused = accepted = 0
    problems: list[str] = []
    accepted_numbers: list[str] = []
    for command in SWEPT:
        for prefix, parser in _leaf_parsers(command):
            for action in parser._actions:
                if not action.option_strings or action.dest in ("help", "debug"):
                    continue
                values = (None,) if action.nargs == 0 else ABSURD
                for value in values:
                    cases += 1
                    try:
                        kind, message = _outcome(prefix, parser, action, value, checkpoint, tmp_path)
                    except Exception as error:  # noqa: BLE001 - the sweep reports every traceback at once
                        problems.append(
                            f"{' '.join(prefix)} {action.option_strings[0]} {value!r}: {type(error).__name__}: {error}"
                        )
                        continue
                    if kind == "accepted":
                        accepted += 1
                        if value is not None and _base(action) in (int, float):
                            accepted_numbers.append(f"{action.option_strings[0]} {value}")
                        continue
                    refused += 1
                    if message.strip().count("\n") or not _names_the_flag(message, action):
                        problems.append(f"{' '.join(prefix)} {action.option_strings[0]} {value!r}: {message!r}")
    print(f"flag sweep: {cases} cases, {refused} refused in one line, {accepted} accepted")
    assert not problems, "\n".join(problems)
    # A number is accepted only where it is finite and inside its declared range.
    for text in accepted_numbers:
        flag, value = text.split(" ", 1)
        assert float(value) == float(value) and abs(float(value)) < 1e20, text
    assert cases > 300


def _base(action: argparse.Action) -> object:
    return getattr(action.type, "base_type", action.type)


def _tiny_checkpoint(path: Path) -> Path:
    """The tools tests' tiny trained-model checkpoint (tests/tiny_checkpoints.py's writer)."""
    from tiny_checkpoints import save_tiny_checkpoint

    return save_tiny_checkpoint(path)


def test_free_text_flags_of_eval_export_and_pack_run_to_a_one_line_end(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    # A name or path passes the parser by nature; what it names is checked when the command runs (a dry start
    # on a tiny checkpoint): an error is one line with exit 2, anything else is a finished run.
    checkpoint = _tiny_checkpoint(tmp_path / "checkpoint.pth")
    runs = 0
    problems = []
    for command in ("eval", "export", "data"):
        for prefix, parser in _leaf_parsers(command):
            for action in parser._actions:
                if not action.option_strings or action.nargs == 0 or action.choices or action.type not in (None, str):
                    continue
                for value in ("", "abc"):
                    argv = dict(_base_argv(prefix, checkpoint, tmp_path / f"run{runs}"))
                    if prefix == ["export"]:
                        argv.update({"--format": ["safetensors"], "--output": [str(tmp_path / f"m{runs}.safetensors")]})
                    argv[action.option_strings[0]] = [value]
                    flat = prefix + [item for key, values in argv.items() for item in [key, *values]]
                    runs += 1
                    with _deadline(60), warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        code = main(flat)
                    err = capsys.readouterr().err
                    if code not in (0, 2) or (code == 2 and err.strip().count("\n")):
                        problems.append(f"{' '.join(flat)} -> exit {code}: {err!r}")
    print(f"dry starts: {runs}")
    assert not problems, "\n".join(problems)
    assert runs >= 20


@pytest.mark.parametrize(
    ("argv", "flag", "reason"),
    [
        (["train", "--recount", "100000000000000000000"], "--recount", "must be in [1, 100]"),
        (["train", "--lr", "inf"], "--lr", "must be a finite number"),
        (["train", "--momentum", "nan"], "--momentum", "must be a finite number"),
        (["train", "--mixup", "nan"], "--mixup", "must be a finite number"),
        (["train", "--world_size", "-1"], "--world_size", "must be in [1, 65536]"),
        (["train", "--min-lr", "-1"], "--min-lr", "must be in [0, 10]"),
        (["train", "--train-subset", "inf"], "--train-subset", "must be a finite number"),
        (["train", "--bce-loss", "--bce-target-thresh", "1.5"], "--bce-target-thresh", "must be in [0, 1)"),
        (
            ["export", "--checkpoint", "c.pth", "--format", "onnx", "--output", "m.onnx", "--opset", "999"],
            "--opset",
            "must be in [14, 23]",
        ),
    ],
)
def test_the_issues_rows_are_one_line_naming_the_flag(
    argv: list[str], flag: str, reason: str, capsys: pytest.CaptureFixture
) -> None:
    with _deadline(SECONDS_PER_CASE):
        code = main(argv)
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and flag in err and reason in err, err


def test_yaml_and_the_python_api_obey_the_same_bounds(tmp_path: Path) -> None:
    settings = tmp_path / "run.yaml"
    settings.write_text("lr: .inf\n")
    with pytest.raises(DeitError, match=r"run.yaml: 'lr' inf: must be a finite number"):
        load_yaml_settings(settings)
    with pytest.raises(DeitError, match=r"'momentum' nan: must be a finite number"):
        make_config(momentum=float("nan"))
    with pytest.raises(DeitError, match=r"'opt_betas': takes 2 or 3 values, got 1"):
        make_config(opt_betas=[0.9])


def test_a_config_built_directly_is_still_checked() -> None:
    from deit.engine.config import TrainConfig

    with pytest.raises(DeitError, match=r"--world_size -1: must be in \[1, 65536\]"):
        validate_config(TrainConfig(model="deit_tiny_patch16_224", world_size=-1))


@pytest.mark.parametrize(
    ("bound", "value", "reason"),
    [
        (Bound(0, 1, high_open=True), 1.0, "must be in [0, 1)"),
        (Bound(0, 1, high_open=True), 0.999, None),
        (Bound(0, 10, low_open=True), 0.0, "must be in (0, 10]"),
        (Bound(1, None), 0, "must be at least 1"),
        (Bound(1, None), 10**400, None),  # huge but whole: only an upper end refuses it
        (Bound(1, 100), 10**400, "must be in [1, 100]"),
        (Bound(None, None), float("nan"), "must be a finite number"),
    ],
)
def test_a_bound_says_why(bound: Bound, value: float, reason: str | None) -> None:
    assert bound.reason(value) == reason


def test_the_python_api_of_export_and_predict_reads_the_same_table(tmp_path: Path) -> None:
    from deit.export.exporter import export
    from deit.inference.predict import predict

    with pytest.raises(DeitError, match=r"--opset 999: must be in \[14, 23\]"):
        export(tmp_path / "c.pth", "onnx", tmp_path / "m.onnx", opset=999)
    with pytest.raises(DeitError, match=r"--tolerance nan: must be a finite number"):
        export(tmp_path / "c.pth", "torchscript", tmp_path / "m.pt", tolerance=float("nan"))
    with pytest.raises(DeitError, match=r"--topk 0: must be in \[1, 100000\]"):
        predict(tmp_path / "c.pth", [tmp_path], topk=0)
    assert not any(tmp_path.iterdir())
