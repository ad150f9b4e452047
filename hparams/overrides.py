"""Overriding a config from `hparam_str`, YAML files and dicts, with one-line errors.

`hparam_str` syntax: `a.b=1,c.d=x`. Values are Python literals (parsed with
`ast.literal_eval`, never `eval`), `true`/`false` are booleans, `none` is None, `|`
separates list items, and anything else is a string. Unknown keys and wrongly-typed values
raise `UserError` naming the key and the closest valid keys.
"""

from __future__ import annotations

import ast
import difflib
import os
from typing import Any

import ml_collections
import yaml

from efficientnetv2.errors import UserError, quoted


def parse_value(text: str) -> Any:
    """One value of an hparam string."""
    text = text.strip()
    if "|" in text:
        return [parse_value(item) for item in text.split("|") if item.strip()]
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text.lower() in ("none", "null"):
        return None
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


def parse_hparam_str(hparam_str: str) -> dict[str, Any]:
    """`a.b=1,c.d=x` -> {'a.b': 1, 'c.d': 'x'} (flat keys, in order)."""
    flat: dict[str, Any] = {}
    for pair in (hparam_str or "").split(","):
        if not pair.strip():
            continue
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UserError(f"`hparam_str` item {quoted(pair.strip())} is not key=value "
                            f"(example: train.epochs=10,model.dropout_rate=0.3)")
        if key.strip() in flat:
            raise UserError(f"`hparam_str` sets {quoted(key.strip())} twice; keep one of them")
        flat[key.strip()] = parse_value(value)
    return flat


def flatten(nested: dict, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    flat = {}
    for key, value in nested.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{path}."))
        else:
            flat[path] = value
    return flat


def parse_overrides(text: str, argument: str = "hparam_str") -> dict[str, Any]:
    """`hparam_str` (or `sweeps`) as the original reads it: key=value pairs, or the path of a
    YAML file (a string ending in .yaml with no '='); flat keys."""
    text = (text or "").strip()
    if text and "=" not in text:
        path = text.rstrip(",").strip()
        if not path.endswith((".yaml", ".yml")):
            raise UserError(f"`{argument}` {quoted(text)} is neither key=value pairs nor a .yaml "
                            "file (example: train.epochs=10,model.dropout_rate=0.3)")
        return load_yaml(path, argument)
    return parse_hparam_str(text)


def load_yaml(path: str, argument: str = "config_file") -> dict[str, Any]:
    """Flat overrides from a YAML file (safe-loaded; nested sections or dotted keys)."""
    if os.path.isdir(path):
        raise UserError(f"config file {path!r} is a folder; pass a YAML file to `{argument}`")
    if not os.path.isfile(path):
        what = "is not a regular file" if os.path.exists(path) else "does not exist"
        raise UserError(f"config file {path!r} {what}; pass a YAML file to `{argument}`")
    try:
        with open(path, encoding="utf-8") as f:
            content = yaml.safe_load(f)
    except UnicodeDecodeError as e:
        raise UserError(f"config file {path!r} is not UTF-8 text (byte {e.start}); save it as "
                        "UTF-8") from None
    except OSError as e:
        raise UserError(f"cannot read config file {path!r}: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        raise UserError(f"config file {path!r} is not valid YAML{line}: "
                        f"{getattr(e, 'problem', e)}") from None
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise UserError(f"config file {path!r} must hold a mapping of sections to keys")
    return flatten(content)


def _all_keys(config: ml_collections.ConfigDict) -> list[str]:
    return list(flatten(config.to_dict()))


def _unknown_key(config: ml_collections.ConfigDict, key: str, source: str) -> UserError:
    keys = _all_keys(config)
    close = difflib.get_close_matches(key, keys, n=3, cutoff=0.5)
    if not close:
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in keys if k.endswith(f".{leaf}")][:3]
    hint = f"; closest: {', '.join(close)}" if close else "; see README.md for the keys"
    return UserError(f"{source}: unknown config key {quoted(key)}{hint}")


def _coerce(field_type: type | None, value: Any, key: str, source: str) -> Any:
    if field_type is None or value is None:
        return value
    if field_type is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. data.split=1 means the string '1'.
    if field_type is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if field_type in (list, tuple):
        return list(value) if isinstance(value, (list, tuple)) else [value]
    if field_type in (int, float) and isinstance(value, bool):
        return _wrong(field_type, value, key, source)
    if not isinstance(value, field_type):
        return _wrong(field_type, value, key, source)
    return value


def _wrong(field_type: type, value: Any, key: str, source: str):
    raise UserError(f"{source}: config key {key!r} expects {field_type.__name__}, "
                    f"got {quoted(value)} ({type(value).__name__})")


# keys the original spells otherwise: its configs and commands carry over
ORIGINAL_KEYS = {"model.act_fn": "model.activation", "model.blocks_args": "model.blocks"}


def own_names(flat: dict[str, Any]) -> dict[str, Any]:
    """`flat` with the original's spellings of keys (ORIGINAL_KEYS) renamed to this project's."""
    return {ORIGINAL_KEYS.get(key, key): value for key, value in flat.items()}


def apply_overrides(config: ml_collections.ConfigDict, flat: dict[str, Any],
                    source: str) -> None:
    """Sets each dotted key of `flat` in `config` after checking that it exists and its type."""
    for key, value in flat.items():
        *sections, leaf = key.split(".")
        node = config
        for section in sections:
            if section not in node or not isinstance(node[section], ml_collections.ConfigDict):
                raise _unknown_key(config, key, source)
            node = node[section]
        if leaf not in node or isinstance(node[leaf], ml_collections.ConfigDict):
            raise _unknown_key(config, key, source)
        node[leaf] = _coerce(node.get_type(leaf), value, key, source)
