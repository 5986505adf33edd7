"""``fieldtui-agent``: the agent's command line.

Each subcommand parses its flags here and calls a plain service function, so the HTTP API, this CLI and
the console's SSH path run the very same code. ``--json`` prints one protocol document on stdout; logs go
to stderr; a failure is one clear line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence

from agent.cli.args import home_flags, source_flags, source_from
from agent.core.errors import AgentError
from fieldtui.protocol.argtypes import fraction, port, seconds

log = logging.getLogger("fieldtui.agent")


def _print_json(model) -> None:
    sys.stdout.write(model.model_dump_json(indent=2) + "\n")
    sys.stdout.flush()


def cmd_detect(args: argparse.Namespace) -> int:
    from agent.inference.detector import detect_images

    result = detect_images(args.images, model=args.model, backend=args.backend, conf=args.conf, iou=args.iou)
    if args.json:
        _print_json(result)
    else:
        for item in result.results:
            print(f"{item.image}: {len(item.detections)} detection(s)")
            for d in item.detections:
                box = ", ".join(f"{v:.0f}" for v in d.box)
                print(f"  {d.class_name:<12} {d.confidence:.2f}  [{box}]")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from agent.inference.backends import doctor

    infos = doctor()
    if args.json:
        sys.stdout.write(json.dumps([i.model_dump() for i in infos], indent=2) + "\n")
    else:
        for info in infos:
            mark = "ok" if info.available else "--"
            print(f"{mark}  {info.key:<12} {info.version or '-':<10} {info.reason}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from agent.cli.headless import run_headless

    return run_headless(
        model=args.model,
        source=source_from(args, dict(os.environ), warn=False) or "demo:",
        backend=args.backend,
        metrics_port=args.metrics_port,
        duration=args.duration,
        as_fast_as_possible=args.fast,
        json_lines=args.json,
        metrics_host=args.metrics_host,
        threads=args.threads,
    )


def _serve_overrides(args: argparse.Namespace) -> dict:
    return {
        "host": args.host,
        "port": args.port,
        "model": args.model,
        "backend": args.backend,
        "source": source_from(args),
        "camera": args.camera,
        "tls": args.tls,
        "name": args.name,
        "mdns": False if args.no_mdns else None,
        "mdns_interfaces": args.mdns_interface,
        "log_level": "DEBUG" if args.verbose else None,
        "threads": args.threads,
    }


def cmd_serve(args: argparse.Namespace) -> int:
    from agent.core.config import load_config
    from agent.server.app import serve

    config = load_config(home=args.home, config_file=args.config, overrides=_serve_overrides(args))
    return serve(config)


def cmd_token(args: argparse.Namespace) -> int:
    from agent.core.config import load_config
    from agent.server.auth import token_info

    info = token_info(load_config(home=args.home, config_file=args.config, overrides={"tls": args.tls}))
    if args.json:
        _print_json(info)
    elif args.quiet:
        print(info.token)
    else:
        print(f"device:          {info.name} ({info.device_id})")
        print(f"api url:         {info.api_url}")
        print(f"tls fingerprint: {info.tls_fingerprint or '(TLS off)'}")
        print(f"token:           {info.token}")
    return 0


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=None, help="model file (.onnx); default: the embedded demo model")
    p.add_argument("--backend", default="onnxruntime", help="backend key (see `fieldtui-agent doctor`)")


def _threads(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of threads") from None
    if not 1 <= value <= 256:
        raise argparse.ArgumentTypeError(f"{value} threads is out of range; use 1-256")
    return value


def _add_threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_threads,
        default=None,
        help="inference intra-op threads (default: measured on the running pipeline)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fieldtui-agent", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("detect", help="run the detector on image files")
    p.add_argument("images", nargs="+", metavar="IMAGE")
    _add_model_flags(p)
    p.add_argument("--conf", type=fraction, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=fraction, default=0.7, help="NMS IoU threshold (default 0.7)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("run", help="run the camera -> detector loop headless, a status line a second")
    _add_model_flags(p)
    source_flags(p)
    p.add_argument(
        "--metrics-port", type=port(0), default=None, help="serve Prometheus /metrics on this port"
    )
    p.add_argument("--metrics-host", default="0.0.0.0", help="address for --metrics-port (default 0.0.0.0)")
    p.add_argument("--duration", type=seconds(), default=None, help="stop after this many seconds")
    p.add_argument("--fast", action="store_true", help="files: as fast as the pipeline goes")
    _add_threads_flag(p)
    p.add_argument(
        "--json", action="store_true", help="one JSON status (PipelineStatus) per line instead of text"
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("doctor", help="list every backend and why it is or is not available")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("serve", help="run the agent: pipeline, HTTP control API and mDNS advertisement")
    home_flags(p)
    p.add_argument("--host", default=None, help="address to listen on (default 0.0.0.0)")
    p.add_argument("--port", type=port(0), default=None, help="port to listen on (default 8470; 0 picks one)")
    p.add_argument("--model", default=None, help="model file (.onnx); default: the embedded demo model")
    p.add_argument("--backend", default=None, help="backend key (see `fieldtui-agent doctor`)")
    source_flags(p)
    p.add_argument("--camera", default=None, help="name of the --source camera (default cam0; a-z, 0-9, '-')")
    p.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None, help="HTTPS, self-signed")
    p.add_argument("--name", default=None, help="device name shown in the console (default: hostname)")
    p.add_argument("--no-mdns", action="store_true", help="do not advertise over mDNS")
    _add_threads_flag(p)
    p.add_argument(
        "--mdns-interface", action="append", default=None, metavar="IP", help="advertise only on this address"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("token", help="print the API token, URL and TLS fingerprint (what pairing reads)")
    home_flags(p)
    p.add_argument("--tls", action=argparse.BooleanOptionalAction, default=None, help="as `serve --tls`")
    p.add_argument("--json", action="store_true", help="print one JSON document (TokenInfo)")
    p.add_argument("--quiet", action="store_true", help="print the token alone (for scripts)")
    p.set_defaults(func=cmd_token)

    from agent.cli.models import add_parser as add_models_parser  # models list|add|activate|...

    add_models_parser(sub)
    from agent.cli.status import add_parsers as add_status_parsers  # status, logs, home (the SSH path)

    add_status_parsers(sub)
    from agent.cli.bench import add_parser as add_bench_parser  # bench (agent/bench/runner.py)

    add_bench_parser(sub)
    from agent.cli.engines import add_parser as add_engines_parser  # engines list|rebuild

    add_engines_parser(sub)
    from agent.cli.cameras import add_parser as add_cameras_parser  # cameras (the SSH path too)

    add_cameras_parser(sub)
    from agent.cli.visit import add_parser as add_report_parser  # report (the visit report's SSH path)

    add_report_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except AgentError as err:
        print(f"fieldtui-agent: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
