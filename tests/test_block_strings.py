import itertools

import pytest

from efficientnetv2 import (
    ARCHITECTURES,
    BlockArgs,
    decode_block_string,
    decode_block_strings,
    encode_block_strings,
)


def test_every_family_round_trips():
    for arch in ARCHITECTURES.values():
        assert encode_block_strings(decode_block_strings(list(arch.blocks))) == list(arch.blocks)


def test_decode_fields():
    block = decode_block_string("r4_k5_s2_e6_i24_o48_se0.25_c1")
    assert block == BlockArgs(4, 5, 2, 6, 24, 48, 0.25, 1, True)
    assert block.fused
    assert not decode_block_string("r1_k3_s1_e1_i8_o8").fused
    assert not decode_block_string("r1_k3_s1_e1_i8_o8_noskip").id_skip


@pytest.mark.parametrize("se, conv, noskip", list(itertools.product(
    ["", "_se0.25", "_se1", "_se0.0625"], ["", "_c0", "_c1"], ["", "_noskip"])))
def test_optional_tokens_round_trip(se, conv, noskip):
    text = f"r3_k7_s2_e4_i16_o32{se}{conv}{noskip}"
    assert encode_block_strings(decode_block_strings([text])) == [text]


@pytest.mark.parametrize("text, bad_token", [
    ("r1_k3_s1_e1_i32", "i32"),  # missing output filters
    ("r1_k3_s1_x1_i32_o16", "x1"),  # unknown key where e is expected
    ("r0_k3_s1_e1_i32_o16", "r0"),  # zero repeats
    ("r1_k3_s1_e1_i32_o16_se1.5", "se1.5"),  # ratio out of range
    ("r1_k3_s1_e1_i32_o16_se0", "se0"),
    ("r1_k3_s1_e1_i32_o16_c2", "c2"),  # conv type
    ("r1_k3_s1_e1_i32_o16_c1_se0.25", "se0.25"),  # out of order
    ("r1_k3_s1_e1_i32_o16_foo", "foo"),
    ("r1_k3_s1_e1_i32_o16_se.25", "se.25"),  # not canonical
    ("r1_k3_s1_e1_i32_o16_c1_c1", "c1"),
    ("r1__k3_s1_e1_i32_o16", ""),
])
def test_malformed_strings_name_the_bad_token(text, bad_token):
    with pytest.raises(ValueError, match=f"token {bad_token!r}"):
        decode_block_string(text)


def test_list_required():
    with pytest.raises(ValueError, match="list of block strings"):
        decode_block_strings("r1_k3_s1_e1_i32_o16")
    with pytest.raises(ValueError, match="list of block strings"):
        decode_block_strings([])
