"""Block strings: the one-line description of an EfficientNet stage.

`r2_k3_s1_e1_i24_o24_c1` reads: 2 repeats, 3x3 kernel, stride 1, expansion 1, 24 input and
24 output filters, Fused-MBConv (`c1`). Optional tokens, in this order: `se<ratio>`
(squeeze-excite, 0 < ratio <= 1), `c<0|1>` (0 = MBConv, 1 = Fused-MBConv), `noskip`
(no residual). Decoding is strict, so `encode(decode(s)) == s` for every accepted string.
"""

from __future__ import annotations

import dataclasses
import re

from efficientnetv2.errors import UserError

_FORMAT = "r<repeats>_k<kernel>_s<stride>_e<expand>_i<in>_o<out>[_se<ratio>][_c<0|1>][_noskip]"
_REQUIRED = ("r", "k", "s", "e", "i", "o")
_POSITIVE_INT = re.compile(r"[1-9][0-9]*")
_TOKEN = re.compile(r"([a-z]+)(.*)")


@dataclasses.dataclass(frozen=True)
class BlockArgs:
    """One stage of blocks, as written in a block string."""

    repeats: int
    kernel_size: int
    strides: int
    expand_ratio: int
    input_filters: int
    output_filters: int
    se_ratio: float | None = None
    conv_type: int | None = None  # None (absent) and 0 mean MBConv; 1 means Fused-MBConv.
    id_skip: bool = True

    @property
    def fused(self) -> bool:
        return self.conv_type == 1


def _block_error(block_string: str, token: str, problem: str) -> UserError:
    return UserError(
        f"block string {block_string!r}: {problem} in token {token!r}; expected {_FORMAT}"
    )


def decode_block_string(block_string: str) -> BlockArgs:
    """Parses one block string; raises `UserError` (a ValueError) naming the bad token."""
    if not isinstance(block_string, str) or not block_string:
        raise UserError(f"block string {block_string!r} is empty or not a string; expected {_FORMAT}")
    tokens = block_string.split("_")
    values: dict[str, int | float | bool] = {}
    for position, token in enumerate(tokens):
        match = _TOKEN.fullmatch(token)
        key, text = (match.group(1), match.group(2)) if match else ("", token)
        if position < len(_REQUIRED):
            if key != _REQUIRED[position]:
                raise _block_error(block_string, token, f"expected '{_REQUIRED[position]}' here")
            if not _POSITIVE_INT.fullmatch(text):
                raise _block_error(block_string, token, "expected a positive integer")
            values[key] = int(text)
        elif key == "se" and "se" not in values and "c" not in values and "noskip" not in values:
            values["se"] = _parse_se_ratio(block_string, token, text)
        elif key == "c" and "c" not in values and "noskip" not in values:
            if text not in ("0", "1"):
                raise _block_error(block_string, token, "conv type must be 0 (MBConv) or 1 (Fused-MBConv)")
            values["c"] = int(text)
        elif token == "noskip" and "noskip" not in values:
            values["noskip"] = True
        else:
            raise _block_error(block_string, token, "unknown, repeated or misplaced option")
    if len(tokens) < len(_REQUIRED):
        missing = _REQUIRED[len(tokens)]
        raise _block_error(block_string, tokens[-1], f"missing '{missing}' after it")
    return BlockArgs(
        repeats=values["r"],
        kernel_size=values["k"],
        strides=values["s"],
        expand_ratio=values["e"],
        input_filters=values["i"],
        output_filters=values["o"],
        se_ratio=values.get("se"),
        conv_type=values.get("c"),
        id_skip=not values.get("noskip", False),
    )


def _parse_se_ratio(block_string: str, token: str, text: str) -> float:
    try:
        ratio = float(text)
    except ValueError:
        raise _block_error(block_string, token, "squeeze-excite ratio is not a number") from None
    if not 0 < ratio <= 1:
        raise _block_error(block_string, token, "squeeze-excite ratio must be in (0, 1]")
    if _format_ratio(ratio) != text:
        raise _block_error(block_string, token, f"write the ratio as '{_format_ratio(ratio)}'")
    return ratio


def _format_ratio(ratio: float) -> str:
    return format(ratio, "g")


def encode_block_string(block: BlockArgs) -> str:
    """Writes the block string of `block` (the inverse of `decode_block_string`)."""
    parts = [
        f"r{block.repeats}",
        f"k{block.kernel_size}",
        f"s{block.strides}",
        f"e{block.expand_ratio}",
        f"i{block.input_filters}",
        f"o{block.output_filters}",
    ]
    if block.se_ratio is not None:
        parts.append(f"se{_format_ratio(block.se_ratio)}")
    if block.conv_type is not None:
        parts.append(f"c{block.conv_type}")
    if not block.id_skip:
        parts.append("noskip")
    return "_".join(parts)


def decode_block_strings(block_strings: list[str]) -> list[BlockArgs]:
    """Decodes a list of block strings (one per stage)."""
    if isinstance(block_strings, str) or not block_strings:
        raise UserError(
            f"expected a non-empty list of block strings, got {block_strings!r}; "
            f"on the command line separate them with '|'"
        )
    return [decode_block_string(s) for s in block_strings]


def encode_block_strings(blocks: list[BlockArgs]) -> list[str]:
    """Encodes a list of `BlockArgs` back to block strings."""
    return [encode_block_string(b) for b in blocks]
