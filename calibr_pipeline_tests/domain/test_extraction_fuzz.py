"""Issue 10: a bad page never crashes a run. 1,200 mutations of the development set's real
pages (truncated, wrong encodings, nested garbage, huge attributes, broken JSON-LD, byte noise)
go through extract_offer in a seeded loop: every outcome is an ExtractionError with a named
error class or an offer with a confidence in [0, 1]; a mutation that keeps the markup's meaning
(re-encoding with a matching charset) never changes a labelled price into another one."""

import json
import random
from decimal import Decimal
from pathlib import Path

from calibr_pipeline.domain.errors import ErrorClass, ExtractionError
from calibr_pipeline.domain.offer_extraction import ExtractedOffer, extract_offer

PAGES = Path(__file__).resolve().parent.parent / "fixtures" / "pages"
MANIFEST = json.loads((PAGES / "manifest.json").read_text(encoding="utf-8"))
ITERATIONS = 1200


def _truncate(rng, data):
    return data[: rng.randrange(0, len(data) + 1)]


def _reencode(rng, data):
    text = data.decode("utf-8", "replace")
    encoding = rng.choice(["latin-1", "cp1251", "utf-16", "shift_jis", "cp1252"])
    return text.encode(encoding, "replace")


def _nest(rng, data):
    depth = rng.choice([50, 500, 3000])
    at = rng.randrange(0, len(data) + 1)
    return data[:at] + b"<div><span>" * depth + b"9.99 \xe2\x82\xac" + b"</span></div>" * (depth // 2) + data[at:]


def _huge_attribute(rng, data):
    at = data.find(b"<body")
    at = at if at >= 0 else 0
    size = rng.choice([10_000, 200_000])
    return data[:at] + b'<div class="price" data-price="' + b"9" * size + b'">' + b"x" * size + b"</div>" + data[at:]


def _garbage_bytes(rng, data):
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 40)):
        if buf:
            buf[rng.randrange(len(buf))] = rng.randrange(256)
    return bytes(buf)


def _broken_jsonld(rng, data):
    payload = rng.choice([b'{"@type":"Product","offers":{"price":', b'{"@graph":[[[[[[', b'{"offers":{"price":{"value":{"value":1}}}}', b'[1e999999]', b'{"price": NaN}'])
    return data.replace(b"</head>", b'<script type="application/ld+json">' + payload + b"</script></head>", 1) or payload


def _swap_tags(rng, data):
    return data.replace(b"<span", b"<del", rng.randrange(1, 4)).replace(b"</div>", b"", rng.randrange(1, 6))


MUTATIONS = [_truncate, _reencode, _nest, _huge_attribute, _garbage_bytes, _broken_jsonld, _swap_tags]


def test_mutated_real_pages_never_raise_anything_but_named_errors():
    rng = random.Random(20261201)
    pages = [((PAGES / "pages" / e["file"]).read_bytes(), e) for e in MANIFEST]
    outcomes: dict[str, int] = {}
    for i in range(ITERATIONS):
        data, entry = pages[i % len(pages)]
        if len(data) > 40_000:
            data = data[: rng.randrange(20_000, len(data))]  # keeps the big page's share of time small
        for mutate in rng.sample(MUTATIONS, rng.randrange(1, 3)):
            data = mutate(rng, data)
        try:
            result = extract_offer(data, "https://fuzz.example/p")
        except ExtractionError as exc:
            assert isinstance(exc.error_class, ErrorClass)
            outcomes[exc.error_class.value] = outcomes.get(exc.error_class.value, 0) + 1
            continue
        assert isinstance(result, ExtractedOffer)
        assert 0.0 <= result.confidence <= 1.0 and result.amount > 0 and len(result.currency) == 3
        outcomes["offer"] = outcomes.get("offer", 0) + 1
    # The loop exercised both kinds of outcome, not only one.
    assert outcomes.get("offer", 0) > 50 and sum(v for k, v in outcomes.items() if k != "offer") > 50, outcomes


def test_reencoding_with_a_declared_charset_keeps_the_labelled_price():
    for entry in MANIFEST:
        if entry["expected_price"] is None:
            continue
        text = (PAGES / "pages" / entry["file"]).read_text(encoding="utf-8")
        for encoding in ("utf-16", "cp1252"):
            if encoding == "cp1252" and any(ord(ch) > 255 for ch in text):
                continue
            declared = text.replace('<meta charset="utf-8"', f'<meta charset="{encoding}"', 1)
            data = (declared if encoding == "utf-16" else declared).encode(encoding, "strict")
            try:
                result = extract_offer(data, "https://fuzz.example/p")
            except ExtractionError:
                continue
            assert result.amount == Decimal(entry["expected_price"]), (entry["file"], encoding)
