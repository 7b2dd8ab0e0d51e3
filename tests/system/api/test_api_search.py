"""Search as people use it (GET /search): words are prefixes, "quoted phrases" keep their
order, results are ranked and paged with a cursor, each carries a headline with the matched
words marked, nothing typed is query syntax, a member finds nothing from before they joined
nor after they left, and a result opens with history's around_seq (the message with its
neighbours, from either read model)."""
import urllib.parse
import uuid

from kchat_testkit.api import User, conforms, send_all, wait_last_seq

START, STOP = "\ue000", "\ue001"


def create(user, title, members=()):
    r = user.post("/conversations", {"title": title, "members": list(members)})
    assert r.status == 201, r
    return r.json["id"]


def search(user, q, **params):
    query = urllib.parse.urlencode({"q": q, **params})
    r = user.get(f"/search?{query}")
    conforms("/search", "GET", r)
    return r


def found(user, q, convo=None):
    r = search(user, q)
    assert r.status == 200, r
    return [m["content"] for m in r.json["messages"] if convo is None or m["convo_id"] == convo]


def test_prefixes_phrases_ranking_and_headlines(commands):
    ann, bob = User(), User()
    tag = f"k{uuid.uuid4().hex[:8]}"  # every word of this test's messages starts with it
    convo = create(ann, "search", [bob.id])
    texts = [f"{tag}pineapple on pizza",                      # 1
             f"I like {tag}pine trees and {tag}pine cones",   # 2: the prefix twice
             f"{tag}apple {tag}pineapple later",               # 3
             f"{tag}pineapple {tag}apple",                    # 4
             f"deleted {tag}pine"]                            # 5, deleted below
    send_all(commands, convo, ann, texts)
    wait_last_seq(ann, convo, 5)
    assert ann.delete(f"/conversations/{convo}/messages/5").status == 200
    # a prefix finds the longer words, never the deleted message
    got = found(bob, f"{tag}pine", convo)
    assert sorted(got) == sorted(texts[:4]), got
    # ranked: the message matching twice first
    assert got[0] == texts[1], got
    # all the words must match, each as a prefix, in any order
    assert sorted(found(bob, f"{tag}pinea {tag}app", convo)) == sorted([texts[2], texts[3]])
    # a quoted phrase keeps its order
    assert found(bob, f'"{tag}pineapple {tag}apple"', convo) == [texts[3]]
    assert found(bob, f'"{tag}apple {tag}pineapple"', convo) == [texts[2]]
    # case does not matter
    assert sorted(found(bob, f"{tag.upper()}PINEAPPLE", convo)) == sorted(
        [texts[0], texts[2], texts[3]])
    # the headline marks the matched words and keeps the rest as it was
    r = search(bob, f"{tag}pineapple")
    heads = {m["seq_no"]: m["headline"] for m in r.json["messages"]}
    assert heads[1] == f"{START}{tag}pineapple{STOP} on pizza", heads
    assert heads[4].startswith(f"{START}{tag}pineapple{STOP} "), heads


def test_a_member_finds_nothing_from_before_they_joined_nor_after_they_left(commands):
    ann, bob, cat = User(), User(), User()
    tag = f"k{uuid.uuid4().hex[:8]}"
    convo = create(ann, "joiners", [bob.id])
    send_all(commands, convo, ann, [f"{tag} before cat joined"])
    wait_last_seq(ann, convo, 1)
    assert ann.post(f"/conversations/{convo}/members", {"members": [cat.id]}).status == 200
    send_all(commands, convo, ann, [f"{tag} after cat joined"])
    wait_last_seq(ann, convo, 2)
    assert found(cat, tag, convo) == [f"{tag} after cat joined"]
    assert sorted(found(bob, tag, convo)) == sorted([f"{tag} before cat joined",
                                                     f"{tag} after cat joined"])
    # bob leaves: what came after is not his to find
    assert bob.delete(f"/conversations/{convo}/members/{bob.id}").status == 204
    send_all(commands, convo, ann, [f"{tag} after bob left"])
    wait_last_seq(ann, convo, 3)
    assert sorted(found(bob, tag, convo)) == sorted([f"{tag} before cat joined",
                                                     f"{tag} after cat joined"])
    assert len(found(cat, tag, convo)) == 2


def test_pages_with_a_cursor_find_each_result_once(commands):
    ann = User()
    tag = f"p{uuid.uuid4().hex[:8]}"
    a, b = create(ann, "one"), create(ann, "two")
    send_all(commands, a, ann, [f"{tag} number {i}" for i in range(7)])
    send_all(commands, b, ann, [f"{tag} {tag} other {i}" for i in range(6)])
    wait_last_seq(ann, a, 7)
    wait_last_seq(ann, b, 6)
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        r = search(ann, tag, **params)
        assert r.status == 200, r
        seen += [(m["convo_id"], m["seq_no"]) for m in r.json["messages"]]
        pages += 1
        cursor = r.json["next_cursor"]
        if cursor is None:
            break
        assert len(r.json["messages"]) == 4
    assert pages == 4 and len(seen) == 13 and len(set(seen)) == 13, (pages, seen)
    # ranked across the pages: the messages with the word twice come first
    assert {c for c, _ in seen[:6]} == {b}, seen
    # a cursor is not something to forge
    for bad in ["x", "0.1_2_3", "nan_1_1_c_x", "0.1_1_1_c x", "1_2_3_" + "c" * 300]:
        r = search(ann, tag, cursor=bad)
        assert (r.status, r.code) == (400, "invalid_query"), (bad, r)


def test_nothing_typed_is_query_syntax(commands):
    ann, eve = User(), User()
    tag = f"h{uuid.uuid4().hex[:8]}"
    convo = create(ann, "hostile")
    send_all(commands, convo, ann, [f"it's {tag} a&b", f"{tag} back\\slash", "nothing"])
    wait_last_seq(ann, convo, 3)
    for q in [f"{tag} it's", f"{tag} a&b", f"{tag} !b", f"{tag} a|b", f"{tag} (a",
              f"{tag} :*", f"{tag} <->", f"{tag} back\\slash", f"{tag}'; DROP TABLE rm.messages",
              f'"{tag}', f'{tag} "it\'s']:
        r = search(ann, q)
        assert r.status == 200, (q, r)
    assert found(ann, f"{tag} it's") == [f"it's {tag} a&b"]
    assert found(ann, f"{tag} back\\slash") == [f"{tag} back\\slash"]
    # nothing to search for, too many terms, too long: 400 with a reason
    seventeen = " ".join(f"w{i}" for i in range(17))
    for q in ["...", "' \" :*", seventeen, '"a" "b" "c" "d" "e"', "x" * 257]:
        r = search(ann, q)
        assert (r.status, r.code) == (400, "invalid_query"), (q, r)
    # and a stranger finds nothing of it
    assert found(eve, tag) == []


def test_a_result_opens_with_its_neighbours(commands):
    ann, bob = User(), User()
    convo = create(ann, "around", [bob.id])
    send_all(commands, convo, ann, [f"line {i}" for i in range(1, 151)])
    wait_last_seq(ann, convo, 150)
    for seq in (140, 20):  # in the Redis tail (the newest 100), and only in Postgres
        r = bob.get(f"/conversations/{convo}/messages?around_seq={seq}&limit=10")
        conforms("/conversations/{id}/messages", "GET", r)
        assert [m["seq_no"] for m in r.json["messages"]] == list(range(seq - 4, seq + 6)), r
        assert r.json["prev_cursor"] == {"before_seq": seq - 4}
        assert r.json["next_cursor"] == {"since_seq": seq + 5}
        older = bob.get(f"/conversations/{convo}/messages?before_seq={seq - 4}&limit=3")
        assert [m["seq_no"] for m in older.json["messages"]] == [seq - 7, seq - 6, seq - 5]
    # at the start and the end
    r = bob.get(f"/conversations/{convo}/messages?around_seq=2&limit=10")
    assert [m["seq_no"] for m in r.json["messages"]] == list(range(1, 11))
    assert r.json["prev_cursor"] is None
    r = bob.get(f"/conversations/{convo}/messages?around_seq=149&limit=10")
    assert [m["seq_no"] for m in r.json["messages"]] == list(range(145, 151))
    assert r.json["next_cursor"] is None and r.json["prev_cursor"] == {"before_seq": 145}
    # not with the other cursors; out of range
    for q in ["around_seq=5&since_seq=1", "around_seq=5&before_seq=9", "around_seq=0",
              "around_seq=x"]:
        r = bob.get(f"/conversations/{convo}/messages?{q}")
        assert (r.status, r.code) == (400, "invalid_query"), (q, r)
