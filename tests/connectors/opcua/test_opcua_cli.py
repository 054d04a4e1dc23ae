"""`mesgw opcua browse | gen-cert | trust` as an operator runs them, against a real server."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from asyncua import ua

from connectors.opcua import pki
from gateway.cli import main

P = ua.SecurityPolicyType


async def mesgw(*args: str) -> tuple[int, str, str]:
    """Run the command line in its own process (it runs its own event loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_browse_prints_the_tree_with_ids_types_and_values(plant_server):
    server = await plant_server()
    await server.write("Good", 1234)
    code, out, err = await mesgw("opcua", "browse", server.endpoint, "--security-policy", "None")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == "Objects  i=85"
    assert "  Line1  ns=2;s=Line1" in lines
    assert "    Good  ns=2;s=Line1.Good  UInt32 = 1234" in lines
    assert "    Order  ns=2;s=Line1.Order  String = 'WO-1'" in lines
    assert "    Speed  ns=2;s=Line1.Speed  Double = 0.0" in lines
    assert not any("ServerStatus" in line for line in lines)  # the Server object is left out


async def test_browse_depth_and_namespace_uris(plant_server):
    server = await plant_server()
    code, out, _ = await mesgw(
        "opcua", "browse", server.endpoint, "--security-policy", "None", "--depth", "1", "--nsu"
    )
    assert code == 0
    assert "  Line1  nsu=urn:test:plant;s=Line1" in out.splitlines()
    assert "Good" not in out


async def test_browse_over_a_secure_channel_with_the_trust_store(plant_server, opcua_pki, tmp_path):
    server = await plant_server(security=[P.Basic256Sha256_SignAndEncrypt], pki=opcua_pki)
    common = [
        "--certificate",
        str(opcua_pki.client_cert),
        "--private-key",
        str(opcua_pki.client_key),
        "--trust-dir",
        str(tmp_path / "trusted"),
    ]
    code, _, err = await mesgw("opcua", "browse", server.endpoint, *common)
    assert code == 1
    assert "untrusted certificate" in err and "mesgw opcua trust" in err

    code, out, err = await mesgw(
        "opcua", "trust", server.endpoint, "--trust-dir", str(tmp_path / "trusted")
    )
    assert code == 0, err
    thumb = pki.thumbprint(pki.load_certificate(opcua_pki.server_cert))
    assert thumb in out and "urn:test:opcua-server" in out

    code, out, err = await mesgw("opcua", "browse", server.endpoint, *common)
    assert code == 0, err
    assert "    Good  ns=2;s=Line1.Good  UInt32 = 0" in out.splitlines()


async def test_trust_refuses_an_unexpected_thumbprint(plant_server, opcua_pki, tmp_path):
    server = await plant_server(security=[P.Basic256Sha256_SignAndEncrypt], pki=opcua_pki)
    trust_dir = str(tmp_path / "trusted")
    code, _, err = await mesgw(
        "opcua", "trust", server.endpoint, "--trust-dir", trust_dir, "--expect", "00:11:22"
    )
    assert code == 1 and "thumbprint differs" in err
    assert pki.TrustStore(Path(trust_dir)).entries() == []


def test_gen_cert_then_trust_a_file_and_list(tmp_path: Path, capsys) -> None:
    out = tmp_path / "pki"
    assert (
        main(["opcua", "gen-cert", "--out", str(out), "--uri", "urn:gw:mesgw", "--hostname", "gw"])
        == 0
    )
    printed = capsys.readouterr().out
    cert = pki.load_certificate(out / "client-cert.der")
    assert pki.thumbprint(cert) in printed and "urn:gw:mesgw" in printed
    assert main(["opcua", "gen-cert", "--out", str(out)]) == 1  # refuses to overwrite
    assert "--force" in capsys.readouterr().err

    trust_dir = tmp_path / "trusted"
    assert (
        main(
            [
                "opcua",
                "trust",
                "--file",
                str(out / "client-cert.der"),
                "--trust-dir",
                str(trust_dir),
                "--yes",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert main(["opcua", "trust", "--list", "--trust-dir", str(trust_dir)]) == 0
    assert pki.thumbprint(cert) in capsys.readouterr().out


def test_unreachable_server_is_a_one_line_error(capsys) -> None:
    from gateway.testing import free_port

    endpoint = f"opc.tcp://127.0.0.1:{free_port()}"
    assert main(["opcua", "browse", endpoint, "--security-policy", "None", "--timeout", "2"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mesgw: {endpoint}: ") and "\n" not in err


async def test_browse_connects_as_a_configured_machine(plant_server, tmp_path):
    server = await plant_server()
    conf = tmp_path / "gateway.toml"
    conf.write_text(
        f"""
[[machines]]
id = "filler-1"
area = "a"
line = "l"
connector = {{ type = "opcua", endpoint = "{server.endpoint}", security_policy = "None" }}
"""
    )
    code, out, err = await mesgw(
        "opcua", "browse", "--config", str(conf), "--machine", "filler-1", "--depth", "1"
    )
    assert code == 0, err
    assert "  Line1  ns=2;s=Line1" in out.splitlines()
    code, _, err = await mesgw("opcua", "browse", "--config", str(conf), "--machine", "nope")
    assert code == 2 and "no OPC UA machine 'nope'" in err
