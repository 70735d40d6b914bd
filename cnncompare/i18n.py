"""The app's text in English and Simplified Chinese: gettext catalogues read with Babel.

How to translate a string (for whoever adds or translates text)
---------------------------------------------------------------
1. Write the English sentence whole, with named placeholders, and wrap it where it is
   shown: ``t("{model} needs {n} px", model=name, n=size)``. Never glue translated
   fragments (word order differs); never ``t(f"...")`` (extraction cannot see it), and
   never ``t(row["key"])`` (extraction takes ``"key"`` for the message: assign it first).
   Plurals: ``tn("{n} run", "{n} runs", n)``. A module-level constant (built at
   import, before any language is chosen) is marked with ``N_("...")``, which returns it
   unchanged, and translated where it is shown: ``t(CONSTANT)``. Text kept as data with
   numbers in it: ``N_("{n} weight layers.", n=depth)`` is the English ``str`` (a
   :class:`Text`) and ``t()`` of it translates it later; an exception raised with one
   shows in Chinese through ``ui.error_text(exc)``.
   Names, units and code stay as they are (LeNet, px, MB, MACs, ``torch``).
2. ``.venv/bin/python -m cnncompare.i18n update`` extracts every ``t``/``tn``/``tc``/``N_``
   string of app.py, views/ and cnncompare/ and merges them into
   ``cnncompare/locales/zh/LC_MESSAGES/messages.po`` (new ones empty, changed ones
   marked fuzzy, which counts as untranslated).
3. Fill in each empty ``msgstr`` in that file (keep every ``{placeholder}``; use the
   field's standard terms: 卷积层, 池化层, 全连接层, 感受野, 步幅, 填充, 参数量, 乘加运算 (MACs),
   浮点运算 (FLOPs), 批量归一化, 残差连接, 稠密连接, 学习率, 训练集/验证集/测试集, 特征图, 通道,
   批量大小, 训练轮次, 准确率, 推理, 吞吐量, 延迟), remove ``#, fuzzy`` once checked, then
   ``.venv/bin/python -m cnncompare.i18n missing`` lists what is still untranslated.
4. ``pytest tests/test_i18n.py``: every string translated with the same placeholders, and
   each covered page walked in Chinese with no English word left (allow-list there). A new
   page: add it to ``WALKED_PAGES`` in that test and to the browser test's Chinese list.

Streamlit code: ``app.py`` chooses the language once per script run
(:func:`cnncompare.ui.apply_language`); a ``@st.fragment`` reruns without ``app.py``, so it
calls ``ui.apply_language()`` first. A cached function whose result holds text takes the
language as an argument (``lang=i18n.get_language()``) so that each language is cached
apart.

The catalogue is read at run time with ``babel.messages.pofile.read_po`` (once per process
and language): no compile step, no ``.mo`` file. This module does not import Streamlit.
"""

from __future__ import annotations

import contextvars
import functools
import gettext
import string
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

SUPPORTED = ("en", "zh")
"""The languages the app speaks; English is the source language (the msgids)."""
SOURCE = "en"
LANGUAGE_NAMES = {"en": "English", "zh": "中文"}
"""Each language in its own words, for the language control."""
BABEL_LOCALES = {"en": "en", "zh": "zh_Hans_CN"}
"""The Babel locale that formats numbers in each language."""

LOCALES = Path(__file__).with_name("locales")
DOMAIN = "messages"
KEYWORDS = {"t": None, "tn": (1, 2), "tc": ((1, "c"), 2), "N_": None}
"""What extraction looks for: the functions below, in Babel's keyword spec."""
SOURCES = ("app.py", "views", "cnncompare")
"""Where the app's text lives, relative to the repository root."""
REPO = Path(__file__).resolve().parents[1]

_language: contextvars.ContextVar[str] = contextvars.ContextVar("cnncompare_language",
                                                                default=SOURCE)


class Text(str):
    """English text that remembers its msgid and arguments, so that :func:`t` can translate
    it later: ``N_("{n} weight layers.", n=11)`` is the ``str`` ``"11 weight layers."``
    everywhere (data, CLI, CSV), and ``t()`` of it gives the sentence in the current
    language. Arguments that are themselves marked strings are translated too."""

    msgid: str
    kwargs: dict[str, object]

    def __new__(cls, msgid: str, **kwargs: object) -> Text:
        text = super().__new__(cls, msgid.format(**kwargs))
        text.msgid, text.kwargs = msgid, kwargs
        return text

    def __reduce__(self):
        return (_text, (self.msgid, self.kwargs))


def _text(msgid: str, kwargs: dict[str, object]) -> Text:
    return Text(msgid, **kwargs)


def N_(msgid: str, **kwargs: object) -> str:  # noqa: N802 - gettext's no-op marker's name
    """Mark ``msgid`` for extraction without translating it (for text built at import time
    or kept as data). With ``kwargs``, a :class:`Text`: the formatted English sentence,
    which :func:`t` translates when it is shown."""
    return Text(msgid, **kwargs) if kwargs else msgid


def set_language(lang: str) -> None:
    """Make ``lang`` the current language of this thread (or task); ``ValueError`` if the
    app does not speak it."""
    if lang not in SUPPORTED:
        raise ValueError(f"language must be one of {', '.join(SUPPORTED)}, got {lang!r}")
    _language.set(lang)


def get_language() -> str:
    """The current language: ``"en"`` unless :func:`set_language` chose another."""
    return _language.get()


@contextmanager
def use_language(lang: str) -> Iterator[str]:
    """``with use_language("zh"): ...`` runs its body in ``lang``, then restores the
    previous language."""
    if lang not in SUPPORTED:
        raise ValueError(f"language must be one of {', '.join(SUPPORTED)}, got {lang!r}")
    token = _language.set(lang)
    try:
        yield lang
    finally:
        _language.reset(token)


def choose_language(query_value: str | None, browser_locale: str | None) -> str:
    """The language of a visit: an explicit ``?lang=`` that the app speaks wins; otherwise a
    browser locale starting with ``zh`` (``zh-CN``, ``zh_TW``, ``zh``) gives Chinese;
    otherwise English."""
    if query_value:
        value = str(query_value).strip().lower()
        if value in SUPPORTED:
            return value
    if browser_locale and str(browser_locale).strip().lower().startswith("zh"):
        return "zh"
    return SOURCE


def catalog_path(lang: str) -> Path:
    return LOCALES / lang / "LC_MESSAGES" / f"{DOMAIN}.po"


class _Messages:
    """One language's translated messages: singulars, plurals and the plural rule."""

    def __init__(self, lang: str) -> None:
        self.singular: dict[tuple[str | None, str], str] = {}
        self.plural: dict[tuple[str | None, str], tuple[str, ...]] = {}
        self.plural_index = gettext.c2py("(n != 1)")
        path = catalog_path(lang)
        if lang == SOURCE or not path.exists():
            return
        from babel.messages.pofile import read_po  # only where a catalogue is read

        with open(path, "rb") as handle:
            catalog = read_po(handle, locale=lang)
        self.plural_index = gettext.c2py(catalog.plural_expr)
        for message in catalog:
            if not message.id or message.fuzzy:
                continue
            if isinstance(message.id, (list, tuple)):
                forms = tuple(message.string or ())
                if forms and all(forms):
                    self.plural[(message.context, message.id[0])] = forms
            elif message.string:
                self.singular[(message.context, message.id)] = message.string


@functools.cache
def messages(lang: str) -> _Messages:
    """The messages of ``lang``, read from its catalogue once per process."""
    return _Messages(lang)


def _format(text: str, fallback: str, kwargs: Mapping[str, object]) -> str:
    if not kwargs:
        return text
    try:
        return text.format(**kwargs)
    except (KeyError, IndexError, ValueError):  # a broken translation: show the English
        return fallback.format(**kwargs)


def t(msgid: str, **kwargs: object) -> str:
    """``msgid`` (an English sentence) in the current language, formatted with ``kwargs``
    (``str.format``; without ``kwargs`` the text is returned as it is, braces included).
    Untranslated text falls back to English. A :class:`Text` is translated with its own
    arguments (string arguments translated too)."""
    if isinstance(msgid, Text) and not kwargs:
        kwargs = {k: t(v) if isinstance(v, str) else v for k, v in msgid.kwargs.items()}
        msgid = msgid.msgid
    text = messages(get_language()).singular.get((None, msgid), msgid)
    return _format(text, msgid, kwargs)


def tc(context: str, msgid: str, **kwargs: object) -> str:
    """Like :func:`t`, for a ``msgid`` that needs a different translation in ``context``."""
    text = messages(get_language()).singular.get((context, msgid), msgid)
    return _format(text, msgid, kwargs)


def tn(singular: str, plural: str, n: int, /, **kwargs: object) -> str:
    """The form of ``singular``/``plural`` that ``n`` takes in the current language,
    formatted with ``kwargs``, where ``n`` is ``{n}`` unless given:
    ``tn("{n} run", "{n} runs", 3) == "3 runs"``."""
    kwargs.setdefault("n", n)
    english = singular if n == 1 else plural
    table = messages(get_language())
    forms = table.plural.get((None, singular))
    text = english
    if forms:
        index = table.plural_index(n)
        text = forms[index] if index < len(forms) else forms[-1]
    return _format(text, english, kwargs)


def number(value: float | int, digits: int | None = None) -> str:
    """``value`` with the current language's digit grouping (Babel): ``1,234,567``;
    ``digits`` fixes the number of decimals."""
    from babel.numbers import format_decimal

    pattern = None if digits is None else "#,##0." + "0" * digits if digits else "#,##0"
    return format_decimal(value, format=pattern, locale=BABEL_LOCALES[get_language()])


def percent(value: float, digits: int = 0) -> str:
    """``value`` (a fraction) as a percentage in the current language: ``0.954`` ->
    ``95%``."""
    from babel.numbers import format_percent

    pattern = "#,##0" + ("." + "0" * digits if digits else "") + "%"
    return format_percent(value, format=pattern, locale=BABEL_LOCALES[get_language()])


def translated_header(columns: Iterable[str], labels: Mapping[str, str]) -> list[str]:
    """One header row in the current language for ``columns``: each column's label from
    ``labels`` (English labels, translated here), the column's own name where it has none."""
    return [t(labels[c]) if c in labels else str(c) for c in columns]


def csv_bytes(frame, *, labels: Mapping[str, str] | None = None,
              header_row: bool = False) -> bytes:
    """``frame`` as UTF-8 CSV with its own (English, stable) column names; with
    ``header_row`` a second header line holds :func:`translated_header`'s labels
    (and the file starts with a byte-order mark, so that spreadsheet programs read the
    Chinese as UTF-8)."""
    import csv
    import io

    text = frame.to_csv(index=False)
    if not header_row:
        return text.encode()
    head, _, body = text.partition("\n")
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(translated_header(frame.columns, labels or {}))
    return ("\ufeff" + head + "\n" + out.getvalue() + body).encode()


def placeholders(text: str) -> set[str]:
    """The named fields of a ``str.format`` text: ``"{n:,} of {total}"`` -> ``{n, total}``."""
    return {field.split(".")[0].split("[")[0]
            for _, field, _, _ in string.Formatter().parse(text) if field is not None}


# --------------------------------------------------------------- catalogue maintenance

def extract(root: Path = REPO):
    """Every marked string of the app's sources as a Babel ``Catalog`` (the template)."""
    from babel.messages.catalog import Catalog
    from babel.messages.extract import extract_from_file

    template = Catalog(project="cnncompare", fuzzy=False)
    files: list[Path] = []
    for source in SOURCES:
        path = root / source
        files += [path] if path.is_file() else sorted(path.rglob("*.py"))
    for path in files:
        if "__pycache__" in path.parts:
            continue
        rel = path.relative_to(root).as_posix()
        for lineno, message, comments, context in extract_from_file(
                "python", str(path), keywords=KEYWORDS, comment_tags=("TRANSLATORS:",),
                strip_comment_tags=True):
            template.add(message, None, [(rel, lineno)], auto_comments=comments,
                         context=context)
    return template


def update(lang: str = "zh") -> tuple[int, int]:
    """Merge the extracted strings into ``lang``'s catalogue (new ones empty, changed ones
    fuzzy, gone ones dropped); returns (messages, untranslated)."""
    from babel.messages.catalog import Catalog
    from babel.messages.pofile import read_po, write_po

    path = catalog_path(lang)
    if path.exists():
        with open(path, "rb") as handle:
            catalog = read_po(handle, locale=lang)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        catalog = Catalog(locale=lang, project="cnncompare")
    catalog.update(extract())
    catalog.fuzzy = False
    catalog.language_team = "cnncompare"
    catalog.version = "0.1.0"
    with open(path, "wb") as handle:  # no line numbers: edits elsewhere change no entry
        write_po(handle, catalog, width=100, ignore_obsolete=True, include_previous=True,
                 include_lineno=False)
    return len(catalog), len(missing(lang))


def missing(lang: str = "zh") -> list[str]:
    """The extracted msgids that ``lang``'s catalogue does not translate (fuzzy counts as
    untranslated)."""
    table = messages.__wrapped__(lang)
    out = []
    for message in extract():
        if not message.id:
            continue
        key = (message.context, message.id[0] if isinstance(message.id, tuple) else
               message.id)
        if key not in table.singular and key not in table.plural:
            out.append(key[1])
    return out


def main(argv: list[str]) -> int:
    """``python -m cnncompare.i18n update|missing``."""
    command = argv[0] if argv else ""
    if command == "update":
        total, untranslated = update()
        print(f"{catalog_path('zh')}: {total} messages, {untranslated} untranslated")
        return 0
    if command == "missing":
        for msgid in missing():
            print(repr(msgid))
        return 0
    print("usage: python -m cnncompare.i18n update|missing", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
