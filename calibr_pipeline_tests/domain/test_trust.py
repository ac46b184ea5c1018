"""Trust score (calibr_pipeline.domain.trust): each signal on its own moves the score by its
documented penalty and names itself in the reasons."""

from decimal import Decimal as D

import pytest

from calibr_pipeline.domain import trust
from calibr_pipeline.domain.trust import TrustInputs, is_anomaly, redirected_away, score

CLEAN = TrustInputs(amount=D("100.00"), extraction_confidence=1.0, peer_amounts=(D("98.00"), D("104.00")))


def test_a_clean_observation_scores_one_and_has_no_reasons():
    result = score(CLEAN)
    assert result.score == D("1.000") and result.reasons == ()


@pytest.mark.parametrize(
    "change, signal, penalty",
    [
        ({"extraction_confidence": 0.7, "extraction_source": "dom"}, "extraction", 0.18),
        ({"age_hours": 30}, "stale", 0.1),
        ({"age_hours": 80}, "stale", 0.3),
        ({"age_hours": 200}, "stale", 0.5),
        ({"amount": D("135.00")}, "peer_deviation", 0.15),
        ({"amount": D("170.00")}, "peer_deviation", 0.3),
        ({"previous_amount": D("300.00"), "peer_amounts": ()}, "history_drop", 0.4),
        ({"previous_amount": D("30.00"), "peer_amounts": ()}, "history_jump", 0.4),
        ({"previous_amount": D("30.00"), "peer_amounts": (), "confirmed_by_refetch": True}, "history_jump", 0.2),
        ({"multi_price": True}, "multi_price", 0.1),
        ({"soft_404": True}, "soft_404", 0.8),
        ({"out_of_stock": True}, "out_of_stock", 0.15),
        ({"currency_inferred": True}, "currency_inferred", 0.1),
        ({"match_type": "similar"}, "match_equivalent", 0.1),
    ],
)
def test_each_signal_alone_moves_the_score_by_its_penalty(change, signal, penalty):
    result = score(TrustInputs(**{**CLEAN.__dict__, **change}))
    assert [r["signal"] for r in result.reasons] == [signal]
    assert result.score == (D("1") - D(str(penalty))).quantize(D("0.001"))


def test_one_cent_price_is_implausible_and_quarantined_by_default():
    result = score(TrustInputs(**{**CLEAN.__dict__, "amount": D("0.01")}))
    assert {r["signal"] for r in result.reasons} == {"implausible_low", "peer_deviation"}
    assert result.quarantined(trust.threshold(environ={}))


def test_our_own_price_is_the_reference_without_peers():
    result = score(TrustInputs(amount=D("1.00"), our_price=D("49.00")))
    assert "implausible_low" in {r["signal"] for r in result.reasons}


def test_soft_404_alone_quarantines():
    assert score(TrustInputs(**{**CLEAN.__dict__, "soft_404": True})).quarantined(D("0.5"))


def test_threshold_comes_from_project_then_environment():
    assert trust.threshold(D("0.7"), environ={"CALIBR_TRUST_THRESHOLD": "0.2"}) == D("0.7")
    assert trust.threshold(None, environ={"CALIBR_TRUST_THRESHOLD": "0.2"}) == D("0.2")
    assert trust.threshold(None, environ={}) == D("0.5")
    with pytest.raises(ValueError, match="CALIBR_TRUST_THRESHOLD"):
        trust.threshold(None, environ={"CALIBR_TRUST_THRESHOLD": "2"})


def test_anomaly_and_redirect_helpers():
    assert is_anomaly(D("100"), D("39")) == "history_drop" and is_anomaly(D("100"), D("40")) is None
    assert is_anomaly(D("100"), D("251")) == "history_jump" and is_anomaly(D("100"), D("250")) is None
    assert redirected_away("https://s.example/shoes/trail-x", "https://s.example/")
    assert redirected_away("https://s.example/shoes/trail-x", "https://s.example/shoes")
    assert not redirected_away("https://s.example/shoes/trail-x", "https://s.example/shoes/trail-x-2")
