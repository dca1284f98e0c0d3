"""Log parser: turn whatever a user pastes (a traceback, a multi-rank training log, a Slack message with a log
inside, an nvidia-smi table) into a typed `OOMReport` with exact numbers and the line each fact came from.

    from ask_oom.tools.log_parser import parse_log
    report = parse_log(open("train.log", "rb").read())

One pass, linear time, bounded memory (`parse_log_stream` for files read in chunks); never raises.
"""

from .parser import LogParser, parse_log, parse_log_stream

__all__ = ["LogParser", "parse_log", "parse_log_stream"]
