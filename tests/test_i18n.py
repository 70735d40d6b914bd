"""The translation layer (cnncompare.i18n) and the app in Chinese.

Unit tests of t/tn/choose_language and the CSV header; the catalogue's completeness (every
marked string of the sources translated, with the same placeholders); and each page
covered so far walked in AppTest with ``?lang=zh``, failing on any visible English word
that is not a name, a unit or code (:data:`ALLOWED`).
"""

from __future__ import annotations

import threading

import pandas as pd
import pytest

from cnncompare import i18n
from cnncompare.i18n import t, tn


@pytest.fixture(autouse=True)
def english_first():
    """Every test starts (and leaves the main thread) in English."""
    with i18n.use_language("en"):
        yield


# ------------------------------------------------------------------------------ t, tn

def test_t_translates_and_formats_named_placeholders():
    assert t("Parameters") == "Parameters"
    with i18n.use_language("zh"):
        assert t("Parameters") == "参数量"
        assert t("MACs") == "乘加运算 (MACs)"
        assert t("Input size (px)") == "输入尺寸 (px)"
    assert i18n.get_language() == "en"
    # Without arguments the text is returned as it is; braces are not formatted.
    assert t("not in the catalogue {x}") == "not in the catalogue {x}"
    assert t("not in the catalogue {x}", x=3) == "not in the catalogue 3"


def test_a_translation_has_the_placeholders_filled_in_zh():
    msgid = "MACs and FLOPs counted for all {n} networks at their canonical input, per image."
    with i18n.use_language("zh"):
        text = t(msgid, n=12)
    assert "12" in text and "{n}" not in text and text != msgid.format(n=12)


def test_tn_chooses_the_english_plural_and_the_single_chinese_form():
    assert tn("{n} group", "{n} groups", 1) == "1 group"      # n fills {n} by default
    assert tn("{n} group", "{n} groups", 18) == "18 groups"
    assert tn("{n} group", "{n} groups", 0) == "0 groups"
    with i18n.use_language("zh"):
        one = tn("{n} group", "{n} groups", 1)
        many = tn("{n} group", "{n} groups", 18)
    assert (one, many) == ("1 组", "18 组")  # Chinese has one form


def test_untranslated_text_falls_back_to_english():
    with i18n.use_language("zh"):
        assert t("A sentence nobody marked for {what}", what="x") == \
            "A sentence nobody marked for x"
        assert tn("{n} apple nobody marked", "{n} apples nobody marked", 2, n=2) == \
            "2 apples nobody marked"


def test_language_is_per_thread_and_unknown_languages_are_refused():
    seen = []
    with i18n.use_language("zh"):
        worker = threading.Thread(target=lambda: seen.append(i18n.get_language()))
        worker.start()
        worker.join()
        assert i18n.get_language() == "zh"
    assert seen == ["en"]  # a new thread starts in English, whatever another chose
    with pytest.raises(ValueError, match="language must be one of en, zh"):
        i18n.set_language("fr")
    with pytest.raises(ValueError, match="language must be one of"):
        with i18n.use_language("de"):
            pass
    assert i18n.get_language() == "en"


@pytest.mark.parametrize("query,locale,expected", [
    ("zh", None, "zh"),
    ("en", "zh-CN", "en"),        # an explicit choice beats the browser
    ("ZH ", "en-US", "zh"),
    ("fr", "zh-TW", "zh"),        # a language the app does not speak is ignored
    ("fr", "en-GB", "en"),
    (None, "zh-CN", "zh"),
    (None, "zh_Hans", "zh"),
    (None, "de-DE", "en"),
    (None, None, "en"),
    ("", "", "en"),
])
def test_choose_language(query, locale, expected):
    assert i18n.choose_language(query, locale) == expected


def test_numbers_follow_the_language():
    assert i18n.number(1234567) == "1,234,567"
    assert i18n.number(0.5, digits=2) == "0.50"
    assert i18n.percent(0.954) == "95%"
    with i18n.use_language("zh"):
        assert i18n.number(61706) == "61,706"
        assert i18n.percent(0.9546, digits=1) == "95.5%"


# --------------------------------------------------------------------------- CSV header

def test_csv_keeps_english_columns_and_adds_a_translated_row_on_request():
    frame = pd.DataFrame({"model": ["lenet", "vgg11"], "params": [61_706, 9_231_114],
                          "custom": [1, 2]})
    labels = {"model": "Model", "params": "Parameters"}
    plain = i18n.csv_bytes(frame, labels=labels).decode()
    assert plain == frame.to_csv(index=False)
    with i18n.use_language("zh"):
        assert i18n.translated_header(frame.columns, labels) == ["模型", "参数量", "custom"]
        doubled = i18n.csv_bytes(frame, labels=labels, header_row=True).decode("utf-8-sig")
    lines = doubled.splitlines()
    assert lines[0] == "model,params,custom"           # the data's own names stay first
    assert lines[1] == "模型,参数量,custom"
    assert lines[2:] == plain.splitlines()[1:]          # every data row unchanged
    # Read back, the first header is the data's: the translated row is the first row.
    back = pd.read_csv(__import__("io").StringIO(doubled))
    assert list(back.columns) == ["model", "params", "custom"] and len(back) == 3


def test_every_shown_cost_column_has_a_translated_label_for_the_csv():
    from cnncompare import ui

    labels = ui.column_labels()
    assert labels["params"] == "Parameters" and labels["macs"] == "MACs"
    with i18n.use_language("zh"):
        header = i18n.translated_header(["model", "params", "macs", "flops"], labels)
    assert header == ["模型", "参数量", "乘加运算 (MACs)", "浮点运算 (FLOPs)"]


# ---------------------------------------------------------------- catalogue completeness

def test_every_marked_string_is_translated_with_the_same_placeholders():
    template = i18n.extract()
    table = i18n.messages.__wrapped__("zh")  # read afresh, not the cached copy
    msgids = [m for m in template if m.id]
    assert len(msgids) > 300  # the sources' strings were found (the walked pages alone)
    untranslated, mismatched = [], []
    for message in msgids:
        if isinstance(message.id, tuple):
            key = (message.context, message.id[0])
            forms = table.plural.get(key)
            if not forms:
                untranslated.append(message.id[0])
                continue
            sources = [i18n.placeholders(message.id[0]) | i18n.placeholders(message.id[1])]
            targets = [i18n.placeholders(f) for f in forms]
        else:
            key = (message.context, message.id)
            if key not in table.singular:
                untranslated.append(message.id)
                continue
            sources, targets = [i18n.placeholders(message.id)], \
                [i18n.placeholders(table.singular[key])]
        if any(target != sources[0] for target in targets):
            mismatched.append((message.id, sources[0], targets))
    assert untranslated == [], (f"{len(untranslated)} strings without a Chinese translation "
                                "(python -m cnncompare.i18n update, then fill them in):\n"
                                + "\n".join(map(repr, untranslated[:40])))
    assert mismatched == []
