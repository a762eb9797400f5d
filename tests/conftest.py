"""Shared fixtures. MovieLens comes from the project's own data step (`saec data fetch`), cached outside git."""

import pytest

from saec.data import movielens


@pytest.fixture(scope="session")
def ml100k():
    """The MovieLens-100K CTR task (fetched once into the cache if missing)."""
    movielens.fetch("movielens-100k", quiet=True)
    return movielens.movielens_ctr("movielens-100k")
