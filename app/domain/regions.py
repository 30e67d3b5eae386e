"""AWS Regions and their partitions, from the endpoint data botocore ships (no AWS call).

A Region that botocore does not list is refused: a job in it could only fail. The partition
(`aws`, `aws-cn`, `aws-us-gov`, …) is the first field of every ARN built for that Region.
"""

from __future__ import annotations

from functools import cache

import botocore.loaders


@cache
def _partitions() -> dict[str, str]:
    """Region name -> partition name, for every Region botocore knows."""
    endpoints = botocore.loaders.create_loader().load_data("endpoints")
    return {
        region: partition["partition"]
        for partition in endpoints["partitions"]
        for region in partition["regions"]
    }


def is_known_region(region: str) -> bool:
    return region in _partitions()


def known_regions() -> list[str]:
    return sorted(_partitions())


def partition_of(region: str) -> str:
    """The partition of a known Region; `aws` for one botocore does not list (never refused
    here: callers validate Regions at the edge with `is_known_region`)."""
    return _partitions().get(region, "aws")
