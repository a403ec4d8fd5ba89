"""The local cloud's S3 serves a ranged GET from the range, as S3 does (localcloud/motofixes.py)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from moto.s3.models import s3_backends

from localcloud.motofixes import byte_span

BUCKET = "unit-data"  # the unit account's bucket (conftest)
SIZE = 20_000_000  # beyond moto's in-memory limit: the object lives in a temporary file
DATA = bytes(range(256)) * (SIZE // 256) + bytes(SIZE % 256)


class CountingBuffer:
    """moto's stored bytes of one object, counting what is read from them."""

    def __init__(self, buffer) -> None:
        self.buffer = buffer
        self.bytes_read = 0

    def read(self, size=-1):
        data = self.buffer.read(size)
        self.bytes_read += len(data)
        return data

    def __getattr__(self, name):
        return getattr(self.buffer, name)


@pytest.fixture
def s3(account):
    account.s3.put_object(Bucket=BUCKET, Key="table.parquet", Body=DATA, ChecksumAlgorithm="SHA256")
    return account.s3


def stored(key: str) -> CountingBuffer:
    """Count the reads of `key`'s bytes in moto's store from now on."""
    fake_key = s3_backends["123456789012"]["aws"].buckets[BUCKET].keys[key]
    fake_key._value_buffer = CountingBuffer(fake_key._value_buffer)
    return fake_key._value_buffer


def test_a_ranged_get_reads_only_the_range(s3):
    buffer = stored("table.parquet")
    answer = s3.get_object(Bucket=BUCKET, Key="table.parquet", Range="bytes=7000000-7999999")
    assert answer["Body"].read() == DATA[7_000_000:8_000_000]
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert answer["ContentRange"] == f"bytes 7000000-7999999/{SIZE}"
    assert answer["ContentLength"] == 1_000_000
    assert buffer.bytes_read == 1_000_000


def test_a_whole_get_still_reads_the_whole_object(s3):
    buffer = stored("table.parquet")
    assert s3.get_object(Bucket=BUCKET, Key="table.parquet")["Body"].read() == DATA
    assert buffer.bytes_read == SIZE


@pytest.mark.parametrize(
    "header, first, last",
    [
        ("bytes=0-9", 0, 9),
        ("bytes=19999000-", 19_999_000, SIZE - 1),
        ("bytes=-65536", SIZE - 65536, SIZE - 1),  # a Parquet footer: the last bytes
        ("bytes=100-99999999999", 100, SIZE - 1),
        ("bytes=-99999999", 0, SIZE - 1),
    ],
)
def test_ranges_are_answered_as_s3_does(s3, header, first, last):
    buffer = stored("table.parquet")
    answer = s3.get_object(Bucket=BUCKET, Key="table.parquet", Range=header, ChecksumMode="ENABLED")
    assert answer["Body"].read() == DATA[first : last + 1]
    assert answer["ContentRange"] == f"bytes {first}-{last}/{SIZE}"
    assert buffer.bytes_read == last + 1 - first
    # S3 gives the object's checksum only with the whole object.
    assert ("ChecksumSHA256" in answer) == (first == 0 and last == SIZE - 1)


@pytest.mark.parametrize("header", ["bytes=0-1,5-6", "bytes=x-y", "bytes=10-5"])
def test_what_is_not_one_range_gets_the_whole_object(s3, header):
    answer = s3.get_object(Bucket=BUCKET, Key="table.parquet", Range=header)
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert answer["Body"].read() == DATA


@pytest.mark.parametrize("header", ["bytes=20000000-", "bytes=-0"])
def test_an_unsatisfiable_range_is_refused(s3, header):
    with pytest.raises(ClientError) as refused:
        s3.get_object(Bucket=BUCKET, Key="table.parquet", Range=header)
    assert refused.value.response["Error"]["Code"] == "InvalidRange"


def test_byte_span_of_an_empty_object_leaves_the_answer_to_moto():
    assert byte_span("bytes=0-", 0) is None
    assert byte_span("bytes=-7", 0) is None
    assert byte_span("items=0-5", 10) is None
