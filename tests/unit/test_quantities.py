import pytest

from libs.common.quantities import QuantityError, parse_bytes, parse_cpu_millis


@pytest.mark.parametrize(
    ("text", "expected"),
    [("1Gi", 2**30), ("512Mi", 512 * 2**20), ("5G", 5 * 10**9), ("1.5Gi", int(1.5 * 2**30)), ("100", 100)],
)
def test_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize(("text", "expected"), [("500m", 500), ("2", 2000), ("0.5", 500), ("1.25", 1250)])
def test_cpu(text, expected):
    assert parse_cpu_millis(text) == expected


@pytest.mark.parametrize("text", ["1Gb", "", "Gi", "-1Gi", "1 Gi", "1e3"])
def test_bad_bytes(text):
    with pytest.raises(QuantityError):
        parse_bytes(text)


@pytest.mark.parametrize("text", ["500Mi", "lots", "1k"])
def test_bad_cpu(text):
    with pytest.raises(QuantityError):
        parse_cpu_millis(text)
