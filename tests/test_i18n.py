"""The translation layer (cnncompare.i18n) and the app in Chinese.

Unit tests of t/tn/choose_language and the CSV header; the catalogue's completeness (every
marked string of the sources translated, with the same placeholders); and each page
covered so far walked in AppTest with ``?lang=zh``, failing on any visible English word
that is not a name, a unit or code (:data:`ALLOWED`).
"""

from __future__ import annotations

import functools
import json
import re
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


# ------------------------------------------------------------- pages walked in Chinese

# Every page of the app (file under views/). Train, Compare and Classify are walked with a
# stored study (STUDY_PAGES), so that Compare draws its curves, bands, intervals, tables and
# confusion matrix and Classify its answers, typicality, Grad-CAM and feature maps.
WALKED_PAGES = ["overview", "architectures", "conv_arithmetic", "profile_bench", "train",
                "compare", "classify"]
STUDY_PAGES = {"train", "compare", "classify"}

ALLOWED = {
    # names of networks, datasets, people, tools and libraries
    "lenet", "alexnet", "vgg", "nin", "googlenet", "resnet", "densenet", "inception",
    "mnist", "fashion", "cifar", "imagenet", "krizhevsky", "lecun", "pytorch", "torch",
    "torchvision", "fvcore", "flopcountermode", "torchinfo", "streamlit", "plotly",
    "dive", "into", "deep", "learning",  # the book's title, beside its Chinese one
    # units, abbreviations and formats
    "px", "macs", "flops", "gflops", "gflop", "csv", "cpu", "gpu", "gpus", "cuda", "mps",
    "relu", "lrn", "mlp", "sgd", "rbf", "sigmoid", "tanh", "dropout", "logits", "amp",
    "autocast", "float", "bfloat", "mac", "ceil", "floor", "out", "and", "the", "zeros",
    # code: PyTorch arguments and functions quoted in the text
    "kernel_size", "bias", "false", "true", "ceil_mode", "eval", "cat", "linear", "groups",
    "aux_logits", "padding", "dilation", "kernel", "stride", "unit", "input", "size",
    "cnncompare", "cnncompare_home", "one", "weird", "trick", "inplace",
    # Train, Compare, Classify: names of methods, people, tools and formats
    "grad", "cam", "welch", "student", "pareto", "ray", "apple", "adam", "scikit", "learn",
    "digits", "png", "jpeg", "webp", "bmp", "gif", "auto",
}
"""English words allowed on a Chinese page: names, units and code. Everything in `code
spans`, paper titles, model and module names of the zoo's networks is allowed besides."""

_SKIPPED_FIELDS = {"id", "form_id", "icon", "spec", "config", "theme", "columns", "data",
                   "format", "url", "page", "page_script_hash", "query_param_key", "mime",
                   "file_name", "selection_mode", "alt", "language", "default", "type",
                   "display_text", "key", "step", "min", "max", "raw_values", "width",
                   "divider"}


def _proto_texts(message) -> list[str]:
    """Every human-readable string of an element's protobuf message (labels, help texts,
    bodies, options), not ids, keys or data."""
    texts: list[str] = []
    for field, value in message.ListFields():
        if field.name in _SKIPPED_FIELDS:
            continue
        repeated = hasattr(value, "__iter__") and not isinstance(value, (str, bytes)) \
            and not hasattr(value, "ListFields")
        values = list(value) if repeated else [value]
        for item in values:
            if isinstance(item, str):
                texts.append(item)
            elif hasattr(item, "ListFields"):
                texts += _proto_texts(item)
    return texts


def _plotly_texts(spec: dict) -> list[str]:
    layout = spec.get("layout", {})
    texts = []

    def title(obj):
        t_ = obj.get("title") if isinstance(obj, dict) else None
        return t_.get("text", "") if isinstance(t_, dict) else (t_ or "")

    texts.append(title(layout))
    texts += [title(v) for k, v in layout.items() if k.startswith(("xaxis", "yaxis"))]
    texts.append(title(layout.get("legend", {})))
    texts += [a.get("text", "") for a in layout.get("annotations", [])]
    for trace in spec.get("data", []):
        texts.append(str(trace.get("name") or ""))
        texts.append(title(trace.get("colorbar", {})) if "colorbar" in trace else "")
        texts.append(title(trace.get("marker", {}).get("colorbar", {})))
    return [t_ for t_ in texts if t_]


def visible_texts(at) -> list[str]:
    """Everything the page shows as text: headings, markdown, captions, alerts, metric and
    widget labels, options and help texts, tab and expander labels, table column labels
    and help, chart titles, axes, legends and annotations. Code blocks are left out."""
    texts: list[str] = []

    def walk(node):
        children = getattr(node, "children", None)
        if isinstance(children, dict):
            for child in children.values():
                yield child
                yield from walk(child)

    for element in walk(at._tree):
        kind = getattr(element, "type", "")
        if kind in ("code", "exception"):
            continue
        proto = getattr(element, "proto", None)
        if proto is None:
            continue
        if kind == "plotly_chart":
            texts += _plotly_texts(json.loads(proto.spec))
            continue
        if kind in ("arrow_data_frame", "dataframe") or hasattr(proto, "columns") and \
                isinstance(getattr(proto, "columns", None), str):
            for config in json.loads(proto.columns or "{}").values():
                texts += [config.get("label") or "", config.get("help") or ""]
            continue
        if hasattr(proto, "ListFields"):
            texts += _proto_texts(proto)
    return [t_ for t_ in texts if t_]


@functools.cache
def _allowed_names() -> frozenset[str]:
    """Model, family and paper words and the zoo's module and class names (code)."""
    from cnncompare import list_models, model_info
    from cnncompare.registry import on_meta_device, preset_config

    words: set[str] = set()
    for name in list_models():
        info = model_info(name)
        words.update(re.findall(r"[A-Za-z]+", f"{name} {info.family} {info.paper}"))
        for preset in ("canonical", "small"):
            with on_meta_device():
                model = preset_config(name, preset).build()
            for module_name, module in model.named_modules():
                words.update(re.findall(r"[A-Za-z]+", module_name))
                words.add(type(module).__name__)
    return frozenset(w.lower() for w in words)


_CODE = re.compile(r"`[^`]*`|\]\([^)]*\)|https?://\S+|<[^>]+>|\S*::\S*")
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_.]*")


def english_words(texts: list[str]) -> dict[str, str]:
    """Words of 3+ ASCII letters that are neither allowed nor code, with a text showing
    each. A word with a digit, an underscore or a dot in it is a name (resnet18,
    model.eval, float32)."""
    allowed = ALLOWED | _allowed_names()
    found: dict[str, str] = {}
    for text in texts:
        for word in _WORD.findall(_CODE.sub(" ", text)):
            word = word.rstrip(".")
            if len(word) < 3 or not word.isalpha() or word.lower() in allowed:
                continue
            found.setdefault(word, text[:120])
    return found


def _walk_page(page: str):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.query_params["lang"] = "zh"
    at.switch_page(f"views/{page}.py")
    at.run()
    if page == "classify" and not at.exception:
        with i18n.use_language("zh"):  # AppTest reads widgets with their format_func here
            at.toggle(key="classify_fmaps").set_value(True).run()
    return at


@pytest.fixture(scope="module")
def study_home(tmp_path_factory):
    """A results home with a tiny study on the digits: lenet and lenet5 x 2 seeds, alexnet x
    1 seed, two epochs each (bands, intervals, a single-seed group, Welch's sentence)."""
    import os

    from cnncompare.store import ResultsStore
    from cnncompare.training import TrainConfig, train_or_load

    home = tmp_path_factory.mktemp("i18n") / "home"
    old = os.environ.get("CNNCOMPARE_HOME")
    os.environ["CNNCOMPARE_HOME"] = str(home)
    try:
        for model, seeds in (("lenet", 2), ("lenet5", 2), ("alexnet", 1)):
            for seed in range(seeds):
                result = train_or_load(TrainConfig(model, epochs=2, seed=seed, train_size=300,
                                                   test_size=60), device="cpu",
                                       store=ResultsStore(home))
                assert result.status == "finished"
    finally:
        if old is None:
            os.environ.pop("CNNCOMPARE_HOME", None)
        else:
            os.environ["CNNCOMPARE_HOME"] = old
    return home


@pytest.mark.parametrize("page", WALKED_PAGES)
def test_page_in_chinese_shows_no_english_words(page, request, monkeypatch):
    if page in STUDY_PAGES:
        monkeypatch.setenv("CNNCOMPARE_HOME", str(request.getfixturevalue("study_home")))
    at = _walk_page(page)
    assert not at.exception, at.exception[0].message
    assert at.session_state["lang"] == "zh" and at.query_params["lang"] == "zh"
    texts = visible_texts(at)
    assert len(texts) > 10
    headings = [h.value for h in [*at.title, *at.header, *at.subheader]]
    assert any(re.search(r"[\u4e00-\u9fff]", h) for h in headings), headings
    assert english_words(texts) == {}
    if page == "compare":  # the whole page: 2 curves, 4+ bars, the front, confusion, classes
        assert len(at.get("plotly_chart")) >= 8 and len(at.dataframe) == 2
        assert any("Welch t 检验" in i.value for i in at.info)
    if page == "classify":  # three networks' answers, typicality and feature maps
        assert len(at.get("plotly_chart")) == 3 and at.subheader[-1].value == "特征图"
        assert sum("典型" in c.value for c in at.caption) >= 3
    # The language control shows both choices, the current one selected.
    picker = at.button_group(key="ui-language")
    assert picker.options == ["English", "中文"] and picker.value == "zh"


def test_the_walk_finds_english_when_the_page_is_in_english():
    """The detector is not blind: the same page in English is full of English words."""
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180)
    at.query_params["lang"] = "en"
    at.switch_page("views/conv_arithmetic.py")
    at.run()
    assert not at.exception
    found = english_words(visible_texts(at))
    assert {"Convolution", "formula", "Output"} <= set(found)


def test_switching_language_keeps_the_page_and_its_state():
    # AppTest calls the widgets' format_func (here t) in this thread to read their state:
    # this thread speaks the page's language while it interacts.
    at = _walk_page("conv_arithmetic")
    with i18n.use_language("zh"):
        at.number_input(key="ca-size").set_value(227).run()
        assert at.title[0].value == "卷积算术"
        at.button_group(key="ui-language").set_value("en").run()
    assert not at.exception
    assert at.title[0].value == "Convolution arithmetic"      # the same page
    assert at.number_input(key="ca-size").value == 227         # its state kept
    assert at.query_params["lang"] == "en" and at.session_state["lang"] == "en"
    at.button_group(key="ui-language").set_value("zh").run()
    assert at.title[0].value == "卷积算术" and at.number_input(key="ca-size").value == 227


def test_browser_locale_decides_the_first_visit_and_the_url_records_it():
    from streamlit.testing.v1 import AppTest

    from tests.conftest import REPO

    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=180)
    at.switch_page("views/conv_arithmetic.py")
    at.run()  # AppTest's browser has no Chinese locale: English
    assert at.title[0].value == "Convolution arithmetic"
    assert at.query_params["lang"] == "en"


def test_overview_fragment_rerun_stays_in_chinese():
    """The zoo table is a fragment that reruns on its own (app.py does not run then): it
    sets the language itself, so its column labels stay Chinese."""
    from cnncompare import paths, ui

    at = _walk_page("overview")
    assert ui.zoo_costs(str(paths.home())).wait(timeout=180)
    at.run()
    assert not at.exception
    labels = {c: json.loads(at.dataframe[0].proto.columns)[c]["label"]
              for c in ("model", "params", "macs")}
    assert labels == {"model": "模型", "params": "参数量", "macs": "乘加运算 (MACs)"}
    captions = " ".join(c.value for c in at.caption)
    assert "已统计全部" in captions


def test_a_training_job_is_shown_in_chinese():
    """A job started on the Chinese Train page: its progress panel (a fragment), the runs'
    labels and states, the live chart and the job's outcome in Chinese; the job itself keeps
    English data (its labels are marked texts, translated only where they are shown)."""
    from cnncompare import ui

    at = _walk_page("train")
    with i18n.use_language("zh"):
        at.multiselect[0].set_value(["lenet"]).run()
        numbers = {n.label: n for n in at.number_input}
        numbers["训练轮次"].set_value(1)
        numbers["随机种子数"].set_value(1)
        numbers["训练集图像数（0：数据集默认值）"].set_value(200)
        numbers["测试集图像数（0：数据集默认值）"].set_value(60).run()
        assert at.button(key="train").label == "训练 1 个运行"
        at.button(key="train").click().run()
    assert not at.exception
    job = ui.job_manager().latest()
    assert job is not None and job.join(240)
    snap = job.snapshot()
    assert snap.state == "done" and [i.label for i in snap.items] == ["lenet · seed 0"]
    with i18n.use_language("zh"):
        at.run()
    assert not at.exception
    assert "进度" in [s.value for s in at.subheader]
    bars = [p.proto.text for p in at.get("progress")]
    assert "**lenet · 随机种子 0** · 完成 · 测试集准确率" in " ".join(bars), bars
    assert any(s.value == "任务完成。已完成的训练轮次已存储。" for s in at.success)
    assert english_words(visible_texts(at)) == {}
