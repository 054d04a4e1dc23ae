"""Help for people reading configuration errors: "did you mean", where values came from.

Kept apart from `gateway.config` (the models) so that the models stay about validation.
"""

from __future__ import annotations

import difflib
import os
import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from common.config import read_toml as _read_toml
from gateway.config import ENV_NESTED, ENV_PREFIX, Settings


def _models(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, unions, lists, dicts)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _models(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType, list, tuple, set, frozenset, dict):
        args = typing.get_args(annotation)
        if origin is dict:
            args = args[1:]
        return [m for a in args for m in _models(a)]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return []


def keys_at(loc: tuple[int | str, ...]) -> set[str]:
    """The valid keys of the table a key path points into (the last part left out)."""
    models: list[type[BaseModel]] = [Settings]
    dict_key = False  # the part after a dict field (tags.<name>) is a key, not a field
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        if dict_key:
            dict_key = False
            continue
        nxt: list[type[BaseModel]] = []
        for model in models:
            field = model.model_fields.get(part)
            if field is not None:
                nxt += _models(field.annotation)
                dict_key = dict_key or typing.get_origin(field.annotation) is dict
            elif part in ("opcua", "modbus", "synthetic"):  # a union branch in the path
                nxt.append(model)
        if not nxt:
            return set()  # not a path of the gateway's configuration
        models = nxt
    return {name for model in models for name in model.model_fields}


def did_you_mean(loc: tuple[int | str, ...]) -> str | None:
    """'; did you mean "x"?' for an unknown key close to a valid one."""
    if not loc or not isinstance(loc[-1], str):
        return None
    match = difflib.get_close_matches(loc[-1], sorted(keys_at(loc)), n=1, cutoff=0.6)
    return f'did you mean "{match[0]}"?' if match else None


def looks_like_simulator(path: Path) -> bool:
    """True for a `mesgw simulate` line file (machines with a protocol, no connectors)."""
    try:
        data = _read_toml(path)
    except Exception:
        return False
    machines = data.get("machines")
    if not isinstance(machines, list) or not machines:
        return False
    return all(isinstance(m, dict) and "protocol" in m and "connector" not in m for m in machines)


def sources(settings: Settings, path: Path | None) -> list[tuple[str, Any, str]]:
    """Every effective value (secrets redacted) with where it came from: env, credential,
    file or default."""
    from gateway.config import redacted

    data = redacted(settings)
    in_file = _read_toml(path) if path is not None and path.is_file() else {}
    cred_dir = os.environ.get("CREDENTIALS_DIRECTORY")
    credentials = (
        {p.name for p in Path(cred_dir).iterdir()}
        if cred_dir and Path(cred_dir).is_dir()
        else set()
    )
    out: list[tuple[str, Any, str]] = []

    def walk(node: Any, raw: Any, key: list[str]) -> None:
        if isinstance(node, dict) and node:
            for name, value in node.items():
                walk(value, raw.get(name) if isinstance(raw, dict) else None, [*key, name])
            return
        if isinstance(node, list) and node and all(isinstance(x, dict) for x in node):
            for i, value in enumerate(node):
                item = raw[i] if isinstance(raw, list) and i < len(raw) else None
                walk(value, item, [*key[:-1], f"{key[-1]}[{i}]"])
            return
        dotted = ".".join(key)
        env = ENV_PREFIX + ENV_NESTED.join(key).upper()
        if "[" not in dotted and env in os.environ:
            origin = f"env {env}"
        elif "[" not in dotted and ENV_NESTED.join(key) in credentials:
            origin = f"credential {ENV_NESTED.join(key)}"
        elif raw is not None:
            origin = str(path)
        else:
            origin = "default"
        out.append((dotted, node, origin))

    walk(data, in_file, [])
    return out
