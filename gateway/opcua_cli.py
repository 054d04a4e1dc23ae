"""`mesgw opcua …`: browse a server, make the gateway's certificate, trust a server's."""

from __future__ import annotations

import argparse
import asyncio
import socket
import sys
from pathlib import Path
from typing import Any

from pydantic import SecretStr, ValidationError

from connectors.opcua import pki
from connectors.opcua.config import OPCUA_PKI_DIR, OpcUaConnector
from gateway.config import DEFAULT_CONFIG, load_config
from gateway.errors import ConfigError, GatewayError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the `opcua` command group to mesgw's command line."""
    opcua = sub.add_parser("opcua", help="OPC UA: browse a server, certificates, trust")
    group = opcua.add_subparsers(dest="opcua_command", required=True)

    browse = group.add_parser(
        "browse",
        help="print a server's node tree with node ids, data types and values",
        description="Print a server's node tree: browse name, node id, data type, value.",
    )
    browse.add_argument("endpoint", nargs="?", help="opc.tcp://host:4840 (or --machine)")
    browse.add_argument("--depth", type=int, default=3, help="levels below the root (default 3)")
    browse.add_argument("--root", default="i=85", help="start node (default i=85, Objects)")
    browse.add_argument(
        "--nsu", action="store_true", help="print node ids with namespace URIs (nsu=…)"
    )
    browse.add_argument(
        "--all", action="store_true", help="include the standard Server object's diagnostics"
    )
    _connection_options(browse)
    browse.set_defaults(func=cmd_browse)

    gen = group.add_parser(
        "gen-cert",
        help="create the gateway's self-signed OPC UA client certificate and key",
        description="Create a self-signed application instance certificate (DER) and its "
        "private key (PEM, mode 0600). The server must then trust the certificate.",
    )
    host = socket.gethostname()
    gen.add_argument("--out", type=Path, default=OPCUA_PKI_DIR, help=f"default {OPCUA_PKI_DIR}")
    gen.add_argument("--uri", default=None, help=f"application URI (default urn:{host}:mesgw)")
    gen.add_argument("--hostname", default=host, help=f"DNS name in the certificate ({host})")
    gen.add_argument("--days", type=int, default=730, help="validity (default 730 days)")
    gen.add_argument("--force", action="store_true", help="replace an existing certificate")
    gen.set_defaults(func=cmd_gen_cert)

    trust = group.add_parser(
        "trust",
        help="trust a server's certificate (fetched from its endpoint, or a file); --list",
        description="Fetch a server's certificate from its endpoints, show its subject and "
        "thumbprint, and store it in the trust directory. Compare the thumbprint with the one "
        "the server (PLC) shows before trusting it.",
    )
    trust.add_argument("endpoint", nargs="?", help="opc.tcp://host:4840")
    trust.add_argument("--file", type=Path, help="trust this certificate file instead")
    trust.add_argument("--list", action="store_true", help="list the trusted certificates")
    trust.add_argument(
        "--expect", metavar="THUMBPRINT", help="refuse unless the SHA-1 thumbprint is this"
    )
    trust.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    trust.add_argument(
        "--trust-dir", type=Path, default=pki.DEFAULT_TRUST_DIR, help=f"({pki.DEFAULT_TRUST_DIR})"
    )
    trust.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    trust.set_defaults(func=cmd_trust)


def _connection_options(p: argparse.ArgumentParser) -> None:
    c = p.add_argument_group("connection (defaults as in the configuration file)")
    c.add_argument("--config", type=Path, help="take the connection from this configuration …")
    c.add_argument("--machine", help="… and this machine's connector")
    c.add_argument(
        "--security-policy",
        choices=["None", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"],
    )
    c.add_argument("--security-mode", choices=["Sign", "SignAndEncrypt"])
    c.add_argument("--certificate", type=Path)
    c.add_argument("--private-key", type=Path)
    c.add_argument("--trust-dir", type=Path)
    c.add_argument("--username")
    c.add_argument("--password-file", type=Path, help="file holding the password")
    c.add_argument("--timeout", type=float, dest="timeout_s")


def connector_from_args(args: argparse.Namespace) -> OpcUaConnector:
    """The connector settings: a configured machine's, overridden by the options given."""
    base: dict[str, Any] = {"type": "opcua"}
    if args.machine:
        settings = load_config(args.config or DEFAULT_CONFIG)
        found = [m for m in settings.machines if m.id == args.machine]
        if not found or found[0].connector.type != "opcua":
            raise ConfigError([f"no OPC UA machine {args.machine!r} in {args.config}"])
        base = found[0].connector.model_dump()
        base["password"] = found[0].connector.password
    overrides = {
        "endpoint": args.endpoint,
        "security_policy": args.security_policy,
        "security_mode": args.security_mode,
        "certificate": args.certificate,
        "private_key": args.private_key,
        "trust_dir": args.trust_dir,
        "username": args.username,
        "timeout_s": args.timeout_s,
    }
    base.update({k: v for k, v in overrides.items() if v is not None})
    if args.password_file is not None:
        base["password"] = SecretStr(_read_password(args.password_file))
    if "endpoint" not in base:
        raise ConfigError(["give an endpoint (opc.tcp://host:4840) or --config and --machine"])
    try:
        return OpcUaConnector(**base)
    except ValidationError as exc:
        raise ConfigError(
            [f"{'.'.join(map(str, e['loc'])) or 'opcua'}: {e['msg']}" for e in exc.errors()]
        ) from exc


def _read_password(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8").strip()
    except OSError as err:
        raise ConfigError([f"cannot read password file {path}: {err.strerror}"]) from err


def _connection_errors() -> tuple[type[BaseException], ...]:
    from asyncua.ua.uaerrors import UaError

    return (OSError, TimeoutError, UaError)


def _failure(err: BaseException, endpoint: str) -> GatewayError:
    from connectors.opcua.device import describe

    return GatewayError(f"{endpoint}: {describe(err)}")


def cmd_browse(args: argparse.Namespace) -> int:
    from asyncua import ua

    cfg = connector_from_args(args)
    try:
        root = ua.NodeId.from_string(args.root)
    except Exception as err:
        raise ConfigError([f"--root: not a node id: {args.root!r}"]) from err
    if args.depth < 0:
        raise ConfigError(["--depth must be 0 or more"])
    return asyncio.run(_browse(cfg, root, args.depth, args.nsu, args.all))


async def _browse(cfg: OpcUaConnector, root: Any, depth: int, nsu: bool, all_: bool) -> int:
    from connectors.opcua.browse import Browser
    from connectors.opcua.session import open_session

    try:
        async with open_session(cfg) as client:
            async for line in Browser(client, by_uri=nsu, everything=all_).walk(root, depth):
                print(line.render(), flush=False)
    except GatewayError:
        raise
    except _connection_errors() as err:
        raise _failure(err, cfg.endpoint) from err
    sys.stdout.flush()
    return 0


def cmd_gen_cert(args: argparse.Namespace) -> int:
    uri = args.uri or f"urn:{args.hostname}:mesgw"
    cert_path, key_path = pki.generate(
        args.out, uri, args.hostname, days=args.days, force=args.force
    )
    cert = pki.load_certificate(cert_path)
    print(f"certificate  {cert_path}")
    print(f"private key  {key_path} (mode 0600)")
    print(f"application  {uri}")
    print(f"thumbprint   {pki.thumbprint(cert)}")
    print(f"valid until  {cert.not_valid_after_utc:%Y-%m-%d}")
    print("Let each OPC UA server trust this certificate (copy it into its trusted store).")
    return 0


def cmd_trust(args: argparse.Namespace) -> int:
    store = pki.TrustStore(args.trust_dir)
    if args.list:
        entries = store.entries()
        for entry in entries:
            c = entry.cert
            print(f"{entry.thumbprint}  {pki.subject(c)}  until {c.not_valid_after_utc:%Y-%m-%d}")
            print(f"    {entry.path}")
        if not entries:
            print(f"no trusted certificates in {args.trust_dir}")
        return 0
    if (args.file is None) == (args.endpoint is None):
        raise ConfigError(["give a server endpoint or --file (or --list)"])
    if args.file is not None:
        cert = pki.load_certificate(args.file)
        source = str(args.file)
    else:
        cert = asyncio.run(_fetch(args.endpoint, args.timeout))
        source = args.endpoint
    print(f"server       {source}")
    print(f"subject      {pki.subject(cert)}")
    print(f"application  {pki.application_uri(cert) or '-'}")
    print(f"thumbprint   {pki.thumbprint(cert)}")
    print(
        f"valid        {cert.not_valid_before_utc:%Y-%m-%d} to {cert.not_valid_after_utc:%Y-%m-%d}"
    )
    if args.expect is not None and _hex(args.expect) != _hex(pki.thumbprint(cert)):
        raise GatewayError(f"thumbprint differs from the expected {args.expect}: not trusted")
    if args.expect is None and not args.yes and sys.stdin.isatty():
        answer = input("Trust this certificate? [y/N] ").strip().lower()
        if answer not in ("y", "yes"):
            print("not trusted")
            return 1
    path = store.add(cert)
    print(f"trusted      {path}")
    return 0


def _hex(thumbprint: str) -> str:
    return thumbprint.replace(":", "").replace(" ", "").lower()


async def _fetch(endpoint: str, timeout_s: float) -> Any:
    from connectors.opcua.session import server_certificate_der

    try:
        cfg = OpcUaConnector(
            type="opcua", endpoint=endpoint, security_policy="None", timeout_s=timeout_s
        )
    except ValidationError as exc:
        raise ConfigError([f"endpoint: {e['msg']}" for e in exc.errors()]) from exc
    try:
        der = await server_certificate_der(cfg)
    except GatewayError:
        raise
    except _connection_errors() as err:
        raise _failure(err, endpoint) from err
    return pki.first_certificate(der)
