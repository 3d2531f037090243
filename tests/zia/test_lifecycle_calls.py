"""The ZIA calls the lifecycle needs (docs/design.md#pushing-to-zia, docs/design.md#expiry): read
one category, remove in batches, create a category with its first batch of entries, add within a
room the caller already read."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.zia.test_client import CATEGORY, PUT_BUCKET, World, entries, make_world
from threatshare.errors import CategoryRefused
from threatshare.zia.bisect import REFUSED_BY_ZIA
from threatshare.zia.categories import category_description
from threatshare.zia.errors import EmptyCategoryRefused

POST_BUCKET = "POST /urlCategories"
GET_ONE = "GET /urlCategories/{id}"


@pytest.fixture
def world(redis_client: redis.Redis) -> Iterator[World]:
    with make_world(redis_client) as world:
        yield world


class TestCreateWithEntries:
    def test_one_post_creates_the_category_holding_its_first_batch(self, world: World) -> None:
        """A new category is created with its first batch in one POST: no placeholder entry."""
        landed: list[list[str]] = []
        refused: dict[str, str] = {}
        description = category_description("urls")
        with world.client() as client:
            category_id = client.create_with_entries(
                CATEGORY, description, entries(50), landed.append, refused
            )
        assert category_id is not None
        assert world.calls(POST_BUCKET) == [200]
        assert world.calls(PUT_BUCKET) == []
        assert world.zia.staged_urls(CATEGORY) == set(entries(50))
        assert landed == [entries(50)] and refused == {}
        assert world.zia.categories()[0]["description"] == description

    def test_a_refused_entry_is_bisected_like_an_add(self, world: World) -> None:
        """An entry ZIA refuses in the creating POST is isolated and rejected; the first part
        that lands creates the category and the rest is added to it."""
        batch = entries(8)
        world.zia.invalid_urls = {batch[5]}
        refused: dict[str, str] = {}
        landed: list[str] = []
        with world.client() as client:
            category_id = client.create_with_entries(CATEGORY, "x", batch, landed.extend, refused)
        assert category_id is not None
        assert refused == {batch[5]: REFUSED_BY_ZIA}
        assert world.zia.staged_urls(CATEGORY) == set(batch) - {batch[5]}
        assert sorted(landed) == sorted(set(batch) - {batch[5]})
        assert len(world.zia.categories()) == 1
        assert world.calls(POST_BUCKET).count(200) == 1

    def test_every_entry_refused_creates_nothing(self, world: World) -> None:
        """When ZIA refuses each entry of the batch, no category is created."""
        batch = entries(2)
        world.zia.invalid_urls = set(batch)
        refused: dict[str, str] = {}
        with world.client() as client:
            assert client.create_with_entries(CATEGORY, "x", batch, lambda b: None, refused) is None
        assert set(refused) == set(batch)
        assert world.zia.categories() == []

    def test_a_tenant_refusing_empty_creation_is_told_apart(self, world: World) -> None:
        """Where the tenant refuses an empty category, find_or_create says so (and nothing is
        created); an invalid name is still a permanent category_refused."""
        world.zia.refuse_empty_categories = True
        with world.client() as client:
            with pytest.raises(EmptyCategoryRefused) as caught:
                client.find_or_create_category(CATEGORY, "x")
            assert caught.value.kind == "temporary"
            with pytest.raises(CategoryRefused):
                client.find_or_create_category("bad/name!", "x")
            assert client.find_category(CATEGORY) is None
        assert world.zia.categories() == []

    def test_a_create_race_adds_to_the_winner(self, world: World) -> None:
        """If the category appeared meanwhile (DUPLICATE_ITEM), the batch goes into it."""
        world.zia.admin_create(CATEGORY, ["theirs.example"])
        with world.client() as client:
            category_id = client.create_with_entries(CATEGORY, "x", entries(3), print, {})
        assert category_id == world.zia.categories()[0]["id"]
        assert world.zia.staged_urls(CATEGORY) == {"theirs.example", *entries(3)}
        assert len(world.zia.categories()) == 1


class TestReadAndRemove:
    def test_read_category_is_one_get_with_urls_and_description(self, world: World) -> None:
        """read_category answers the URLs and description in one GET; None once deleted."""
        category_id = world.zia.admin_create(CATEGORY, ["a.example", "b.example/x"], "notes")
        with world.client() as client:
            content = client.read_category(category_id)
            assert content is not None
            assert (content.id, content.name, content.description) == (
                category_id,
                CATEGORY,
                "notes",
            )
            assert content.urls == ["a.example", "b.example/x"]
            world.zia.admin_delete(CATEGORY)
            assert client.read_category(category_id) is None
        assert world.calls(GET_ONE) == [200, 404]

    def test_remove_goes_in_batches_and_leaves_the_rest(self, world: World) -> None:
        """Removing 7 of 10 entries with batch size 3 takes ⌈7/3⌉ = 3 PUTs; the rest stays."""
        all_entries = entries(10)
        category_id = world.zia.admin_create(CATEGORY, all_entries)
        with world.client() as client:
            assert client.remove(category_id, CATEGORY, all_entries[:7], 3) == 7
        assert world.calls(PUT_BUCKET) == [200, 200, 200]
        assert world.zia.staged_urls(CATEGORY) == set(all_entries[7:])

    def test_add_within_a_room_read_by_the_caller(self, world: World) -> None:
        """Given the room, an add reads no quota and pushes what fits, newest first."""
        category_id = world.zia.admin_create(CATEGORY, ["old.example"])
        landed: list[str] = []
        with world.client() as client:
            pushed, refused = client.add_batches(
                category_id, CATEGORY, iter([entries(4)]), landed.extend, room=10
            )
        assert (pushed, refused) == (4, {})
        assert [c.bucket for c in world.zia.calls] == [PUT_BUCKET]


def test_category_sizes_list_every_custom_category_largest_first(world: World) -> None:
    """One GET of counts gives each custom category's number of URLs, largest first."""
    world.zia.admin_create("Admin Blocks", entries(3, "admin"))
    world.zia.admin_create(CATEGORY, entries(5))
    with world.client() as client:
        assert client.category_sizes() == [(CATEGORY, 5), ("Admin Blocks", 3)]
    assert [c.bucket for c in world.zia.calls] == ["GET /urlCategories"]
