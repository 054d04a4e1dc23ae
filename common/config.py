"""The configuration base every config file of the project uses: strict sections, plant
identifiers, secret files, TOML reading, and errors that name the file and the key."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, SecretStr, StringConstraints, ValidationError

from common.errors import ConfigError

ENV_PREFIX = "MESGW_"
ENV_NESTED = "__"

# ISA-95 identifiers appear in topics and tables: lower-case, stable, no separators of MQTT.
Ident = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")]


class Section(BaseModel):
    """Every config section rejects unknown keys and is immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def read_secret_file(path: Path) -> SecretStr:
    """A secret from a file (one line; surrounding white space is not part of it)."""
    try:
        return SecretStr(path.read_text(encoding="utf-8").strip())
    except OSError as err:
        raise ValueError(f"cannot read secret file {path}: {err.strerror}") from err


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file as data; a ConfigError naming the file when it cannot be read."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError as err:
        raise ConfigError([f"{path}: file not found"]) from err
    except PermissionError as err:
        raise ConfigError([f"{path}: permission denied"]) from err
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([f"{path}: invalid TOML: {err}"]) from err


def _key_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("opcua", "modbus", "synthetic") and out.endswith("connector"):
            continue  # the discriminated-union branch name is noise to the reader
        else:
            out += f".{part}" if out else str(part)
    return out


def _message(err: Any) -> str:
    kind = err["type"]
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "required key is missing"
    if kind == "literal_error":
        expected = err.get("ctx", {}).get("expected", "")
        choices = expected.replace(" or ", ", ").replace("'", "")
        return f"must be one of {choices}"
    if kind == "string_pattern_mismatch" and "a-z0-9_-" in str(err.get("ctx", {})):
        return "must be lower-case letters, digits, '_' or '-' (1-64 characters)"
    msg = str(err["msg"])
    return msg.removeprefix("Value error, ")


def format_errors(exc: ValidationError, path: Path | None) -> list[str]:
    """Every validation problem as `file: key: message` (`env NAME` when the environment
    set it)."""
    origin = str(path) if path else "<defaults>"
    problems = []
    for err in exc.errors():
        key = _key_path(err["loc"])
        env_name = ENV_PREFIX + key.replace(".", ENV_NESTED).upper()
        where = f"env {env_name}" if env_name in os.environ else origin
        problems.append(f"{where}: {key or '<root>'}: {_message(err)}")
    return problems
