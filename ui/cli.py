"""`ask-oom`: the command line. Each subcommand lives in its own module (ui/cmd_*.py) with
`HELP`, `add_arguments(parser)` and `run(args) -> exit code`; this file only dispatches and
turns every failure into one line and a documented exit code (ui/errors.py)."""

from __future__ import annotations

import argparse
import importlib
import sys

from ..tools.errors import InputError
from .errors import EXIT_INTERNAL, EXIT_USAGE, UserError
from .inputs import debug_enabled

# Subcommand → module. Modules must import fast: heavy imports (torch, llama-index, gradio) go inside run().
COMMANDS: dict[str, str] = {
    "diagnose": "ask_oom.ui.cmd_diagnose",
    "parse": "ask_oom.ui.cmd_parse",
    "estimate": "ask_oom.ui.cmd_estimate",
    "check": "ask_oom.ui.cmd_check",
    "fix": "ask_oom.ui.cmd_fix",
    "probe": "ask_oom.ui.cmd_probe",
    "search": "ask_oom.ui.cmd_search",
    "kb": "ask_oom.ui.cmd_kb",
    "ui": "ask_oom.ui.cmd_ui",
    "slack": "ask_oom.ui.cmd_slack",
    "chat": "ask_oom.ui.cmd_chat",
}

EPILOG = """examples:
  ask-oom < train.log                          diagnose a pasted log (same as 'ask-oom diagnose')
  ask-oom diagnose train.log --config train.yaml --gpu A100-40GB --gpus 8 --write-fixed fixed.yaml
  ask-oom parse --json < train.log             the parsed OOM report only
  ask-oom estimate --config train.yaml --gpu H100-80GB
  ask-oom check train.yaml --gpu A100-80GB && llamafactory-cli train train.yaml
  ask-oom fix --config train.yaml --log train.log --gpu 4090 --write fixed.yaml
  ask-oom search "qwen2.5-vl lora oom vision tower"
  ask-oom chat                                 a conversation in the terminal (paste a log, then ask follow-ups)
  echo "what if zero 3" | ask-oom chat --session ID --json    one turn for scripts: reply, state, diagnosis

exit codes: 0 ok, 1 internal error, 2 bad usage or unreadable input, 3 no memory error in the input,
            4 a needed resource is unavailable (no CUDA, no index), 5 nothing fits the GPU,
            6 kb ingest: nothing new, 7 check: borderline (inside the error band)
"""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so usage errors become our one-line exit-2 error."""

    def error(self, message: str):  # noqa: D102 - argparse API
        raise UserError(f"{self.prog}: {message} (see --help)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="ask-oom",
        description="Diagnose GPU out-of-memory failures in LLM / multimodal-LLM fine-tuning and return a fixed config.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a subcommand not built yet is simply absent from --help
        sp = sub.add_parser(name, help=module.HELP, description=module.HELP,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            epilog=getattr(module, "EPILOG", None))
        module.add_arguments(sp)
        sp.set_defaults(_run=module.run)
    return parser


def _with_default_command(argv: list[str]) -> list[str]:
    """Bare `ask-oom [opts]` means `ask-oom diagnose [opts]`."""
    if argv and (argv[0] in COMMANDS or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["diagnose", *argv]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv[:1] == ["--version"]:
            from importlib.metadata import version

            print(f"ask-oom {version('ask-oom')}")
            return 0
        parser = build_parser()
        args = parser.parse_args(_with_default_command(argv))
        return int(args._run(args) or 0)
    except UserError as exc:
        print(f"ask-oom: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except InputError as exc:
        print(f"ask-oom: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("ask-oom: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except SystemExit as exc:  # --help exits 0 through argparse
        return int(exc.code or 0) if isinstance(exc.code, int) else EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - last line of defence: never a traceback for users
        if debug_enabled():
            raise
        print(f"ask-oom: internal error: {type(exc).__name__}: {exc} (rerun with ASK_OOM_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":
    sys.exit(main())
