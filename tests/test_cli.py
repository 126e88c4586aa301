"""One set of options: every subcommand takes the same names, shows its defaults, and refuses bad values in one line."""
import pytest

from nin_common import cli
from nin_common.engine import registry

SUBCOMMANDS = cli.COMMANDS


def options_of(command):
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return {s for a in sub._actions for s in a.option_strings}, sub


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_every_subcommand_takes_backend_and_shows_defaults(command, capsys):
    names, _ = options_of(command)
    if command != "convert":  # convert's target is --to
        assert "--backend" in names
    assert not names & {"--batch", "--limit"}, "one name per option: --batch-size, --limit-val"
    assert cli.main([command, "--help"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    _, sub = options_of(command)
    for action in sub._actions:
        if action.option_strings and action.default not in (None, False, "==SUPPRESS=="):
            value = ",".join(action.default) if isinstance(action.default, list) else action.default
            assert f"default: {value})" in shown, f"{command} {action.option_strings[0]} hides its default"


@pytest.mark.parametrize("command", ["train", "evaluate", "compare"])
def test_data_reading_commands_take_data_dir(command):
    assert "--data-dir" in options_of(command)[0]


def test_backend_option_takes_one_a_list_or_all():
    parser = cli.build_parser()
    for text, names in (("all", registry.installed()), (registry.BACKENDS[0], [registry.BACKENDS[0]]),
                        (",".join(registry.BACKENDS[:2]), list(registry.BACKENDS[:2]))):
        for command in ("summary", "train", "bench", "parity", "resources", "evaluate", "compare"):
            extra = {"compare": ["--out", "x"], "evaluate": ["ckpt"]}.get(command, [])
            assert parser.parse_args([command, "--backend", text, *extra]).backend == names


def test_bad_values_are_one_line_and_exit_2(capsys):
    for argv in (["train", "--backend", "torch", "--epochs", "0"], ["summary", "--backend", "nope"],
                 ["evaluate", "x", "--batch-size", "-3"], ["train", "--backend", "torch", "--lr", "nan"],
                 ["train", "--backend", "torch", "--momentum", "1"], ["train", "--backend", "torch", "--nesterov", "maybe"]):
        assert cli.main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"nin {argv[0]}: error: argument --"), err
    # a value each option takes but the run cannot: the same one line, from the run's settings check
    assert cli.main(["train", "--backend", "torch", "--recipe", "chapter", "--nesterov", "true"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "nin train: error: expected a momentum above 0 with nesterov=True, got momentum=0.0")


def test_version(capsys):
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("nin ")
