"""Streaming from and to an S3-compatible object store (moto's standalone server on 127.0.0.1,
as s3fs's own tests do): zarr arrays through fsspec, and the completion marker that stands in
for the atomic rename object stores do not have."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from pixelmill.engines import is_complete, make_engine, stream_apply
from pixelmill.ops import SobelMagnitude

from conftest import random_image

zarr = pytest.importorskip("zarr")
pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")


@pytest.fixture
def s3():
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    # Bounded: the server stops by itself if a test hangs.
    timer = threading.Timer(120, server.stop)
    timer.daemon = True
    timer.start()
    host, port = server.get_host_and_port()
    options = {"key": "testing", "secret": "testing", "client_kwargs": {"endpoint_url": f"http://{host}:{port}",
                                                                        "region_name": "us-east-1"}}
    import boto3

    boto3.client("s3", endpoint_url=f"http://{host}:{port}", aws_access_key_id="testing",
                 aws_secret_access_key="testing", region_name="us-east-1").create_bucket(Bucket="pixelmill-test")
    try:
        yield options
    finally:
        timer.cancel()
        server.stop()


def test_a_zarr_array_on_s3_streams_to_s3_and_is_marked_complete_last(s3, rng):
    image = random_image(rng, (260, 120, 3), np.uint8)
    store = lambda name: zarr.storage.FsspecStore.from_url(f"s3://pixelmill-test/{name}", storage_options=s3)  # noqa: E731
    source = zarr.create_array(store=store("in.zarr"), shape=image.shape, chunks=(64, 64, 3), dtype=np.uint8)
    source[:] = image
    sink = zarr.create_array(store=store("out.zarr"), shape=image.shape, chunks=(64, 120, 3), dtype=np.uint8)
    op = SobelMagnitude(policy="clip")
    seen = []

    def check_not_yet(r1):
        # While bands are written, a reader of the store sees an incomplete output.
        seen.append(is_complete(zarr.open_array(store=store("out.zarr"), mode="r")))

    with make_engine("numba", workers=2) as eng:
        stream_apply(op, source, sink, engine=eng, border="reflect", progress=check_not_yet)
        expected = eng.run(op, image, border="reflect")
    assert seen and not any(seen)
    again = zarr.open_array(store=store("out.zarr"), mode="r")
    assert is_complete(again)
    np.testing.assert_array_equal(again[:], expected)
