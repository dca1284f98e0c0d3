"""tools/units.py: sizes and counts as logs and people write them."""

import pytest

from ask_oom.tools.units import GiB, MiB, count_said, decimal_number, format_bytes, parse_size


@pytest.mark.parametrize("text, value", [("23.64 GiB", int(round(23.64 * GiB))), ("704.00 KiB", 704 * 1024),
                                         ("62.5GB", int(62.5 * GiB)), ("22,25 Gi", int(22.25 * GiB)),
                                         ("1,024 MiB", 1024 * MiB)])
def test_a_size_is_read_in_binary_units_whatever_its_spelling(text, value):
    assert parse_size(text) == value


def test_what_is_not_a_size_is_none():
    assert parse_size("23.64 apples") is None and parse_size("GiB") is None


def test_a_localised_decimal_and_thousands_separators_are_told_apart():
    assert decimal_number("39,39") == 39.39 and decimal_number("1,024") == 1024.0
    with pytest.raises(ValueError):
        decimal_number("abc")


@pytest.mark.parametrize("number, k, count", [("8192", None, 8192), ("21,000", None, 21000), ("32", "k", 32768),
                                              ("1.5", "K", 1536), ("10", True, 10240)])
def test_a_k_count_is_in_powers_of_two_as_context_lengths_are(number, k, count):
    assert count_said(number, k) == count


def test_sizes_are_formatted_back_in_binary_units():
    assert format_bytes(int(1.5 * GiB)) == "1.50 GiB" and format_bytes(None) == "unknown"
