"""What the search box makes of pasted text, and how a filter reads back in words."""

from __future__ import annotations

import pytest
from django.http import QueryDict

from dashboard.filters import is_trace_id, parse_task_filter, search_terms


@pytest.mark.parametrize(
    ("q", "terms"),
    [
        ("19817", ("19817",)),
        ("order 19817", ("order 19817", "19817")),
        ("Order 19817", ("Order 19817", "19817")),
        ("ORDER: 19817", ("ORDER: 19817", "19817")),
        ("#19817", ("#19817", "19817")),
        ("Order #19817.", ("Order #19817.", "19817")),
        ("(task 3f2a9c1e)", ("(task 3f2a9c1e)", "3f2a9c1e")),
        ("“SKU-3141”", ("“SKU-3141”", "SKU-3141")),
        ("  PAY-7782  ", ("PAY-7782",)),
    ],
)
def test_search_terms_keep_the_id_from_what_people_paste(q, terms):
    assert search_terms(q) == terms


def test_search_terms_of_filler_words_alone_are_the_text_itself():
    assert search_terms("order") == ("order",)


def test_search_terms_of_blank_text_are_none():
    assert search_terms("   ") == ()


def test_search_terms_are_capped():
    assert search_terms("a b c d e f g h") == ("a b c d e f g h", "a", "b", "c", "d", "e")


def test_search_terms_keep_a_hyphenated_input_id_whole():
    assert search_terms("order-19817") == ("order-19817",)


def test_filter_search_terms_come_from_q():
    task_filter = parse_task_filter(QueryDict("q=order+%2319817"))
    assert task_filter.q == "order #19817"
    assert task_filter.search_terms == ("order #19817", "19817")


def test_is_trace_id_takes_32_hex_digits_in_any_case():
    assert is_trace_id("4BF92F3577B34DA6A3CE929D0E0E4736")
    assert not is_trace_id("4bf92f3577b34da6a3ce929d0e0e473")
    assert not is_trace_id("4bf92f3577b34da6a3ce929d0e0e4736\n")


def test_describe_names_the_search_once():
    task_filter = parse_task_filter(QueryDict("q=order+19817&state=FAILURE"))
    assert task_filter.describe() == "state FAILURE, the search “order 19817”"


def test_describe_says_the_name_is_a_part():
    assert parse_task_filter(QueryDict("name=send_invoice")).describe() == (
        "a name containing “send_invoice”"
    )


def test_state_parameters_round_trip():
    task_filter = parse_task_filter(QueryDict("state=FAILURE&state=retry"))
    assert task_filter.states == ("FAILURE", "RETRY")
    assert task_filter.querystring() == "state=FAILURE&state=RETRY"
