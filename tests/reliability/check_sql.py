#!/usr/bin/env python3
"""Checks that no SQL text in the C sources is built with data: every SQL statement is a constant.

Why this file exists: the job store is shared by every responder process, the bridge and the
CLI, and requests carry client text (names, ids, idempotency keys). SQL injection is impossible
only as long as every statement handed to SQLite is fixed at compile time and data always goes
through sqlite3_bind_*. db/db.c promises exactly that ("never concatenated"); this program holds
the whole tree to it, so that a later `snprintf(sql, ..., "... '%s'", id)` cannot slip in.

    python3 tests/reliability/check_sql.py [--self-test] [--root DIR] [-v]

It scans every C source and header under db/, fcgi/, wsbridge/, cli/, common/ and engine/ (tests
are not scanned) and looks at:

- SQL sinks: the SQL argument of sqlite3_prepare*, sqlite3_exec, sqlite3_get_table and
  sqlite3_declare_vtab. It must be a string literal, a macro or a `const` variable/array whose
  value is made only of string literals (`static const char SQL_X[] = "..."`, `#define`,
  `static const char *const table[] = {...}` indexed by anything, `#x` stringizing), a
  concatenation of those, or a `?:` whose branches are such. When it is a parameter of the
  function that makes the call (a wrapper such as db_exec(db, sql, what)), that function
  becomes a sink too and every call of it is checked the same way.
- SQLite's formatting functions (sqlite3_mprintf, sqlite3_vmprintf, sqlite3_snprintf,
  sqlite3_vsnprintf, sqlite3_str_appendf, ...): any conversion in the format, or a format that
  is not constant, is text built with data.
- C string building (sprintf, snprintf, vsnprintf, asprintf, strcat, strcpy, memcpy, ...)
  whose format or source text looks like SQL (SELECT ... FROM, INSERT INTO, UPDATE x SET,
  DELETE FROM, PRAGMA, CREATE/DROP/ALTER TABLE, ...).

Each violation is printed as FILE:LINE: message. The figures are printed as `FIGURE key=value`
lines, then PASS (exit 0) or FAIL (exit 1). --self-test runs the checker on small in-memory C
snippets whose verdicts are known (some must be caught, some must pass) and fails if any
verdict is wrong; it needs no build and no sources.

A place where SQL must be built with data and cannot be bound (SQLite does not bind, e.g., the
value of some PRAGMAs) would go into ALLOW_LIST below, with its justification. It is empty:
there is no such place today.

Python 3 standard library only (and relcommon.py beside it, for its output).
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from relcommon import REPO, fail, figure
SCANNED_DIRS = ("db", "fcgi", "wsbridge", "cli", "common", "engine")

# Functions whose argument number N (0-based) is SQL text that SQLite compiles.
SQL_SINKS: Dict[str, int] = {
    "sqlite3_prepare": 1, "sqlite3_prepare_v2": 1, "sqlite3_prepare_v3": 1,
    "sqlite3_prepare16": 1, "sqlite3_prepare16_v2": 1, "sqlite3_prepare16_v3": 1,
    "sqlite3_exec": 1, "sqlite3_get_table": 1, "sqlite3_declare_vtab": 1,
}

# SQLite's own formatting: the format argument's position.
SQLITE_FORMATTERS: Dict[str, int] = {
    "sqlite3_mprintf": 0, "sqlite3_vmprintf": 0, "sqlite3_snprintf": 2,
    "sqlite3_vsnprintf": 2, "sqlite3_str_appendf": 1, "sqlite3_str_vappendf": 1,
}
# SQLite's string builder without a format: building text at run time is the point of it.
SQLITE_BUILDERS = ("sqlite3_str_append", "sqlite3_str_appendall", "sqlite3_str_appendchar")

# C functions that build text in a buffer: the argument whose text is checked for SQL.
C_BUILDERS: Dict[str, int] = {
    "sprintf": 1, "snprintf": 2, "vsprintf": 1, "vsnprintf": 2, "asprintf": 1, "vasprintf": 1,
    "strcat": 1, "strncat": 1, "strcpy": 1, "strncpy": 1, "stpcpy": 1, "stpncpy": 1,
    "strlcat": 1, "strlcpy": 1, "memcpy": 1, "memmove": 1, "mempcpy": 1,
}

# What SQL text looks like (the statement forms SQLite knows, with the words that follow the
# keyword, so that English such as "delete the job" is not taken for SQL).
SQL_LOOKS = re.compile(
    r"(?-i:\bSELECT\b[\s\S]*\bFROM\b)|\bINSERT\s+(OR\s+\w+\s+)?INTO\b|\bREPLACE\s+INTO\b"
    r"|\bUPDATE\s+[\w\"]+\s+SET\b|\bDELETE\s+FROM\b|\bPRAGMA\s+\w+"
    r"|\b(CREATE|DROP)\s+(TEMP\s+|TEMPORARY\s+|UNIQUE\s+|VIRTUAL\s+)?"
    r"(TABLE|INDEX|TRIGGER|VIEW)\b|\bALTER\s+TABLE\b|\bATTACH\s+(DATABASE\s+)?['\"%?]"
    r"|\bBEGIN\s+(IMMEDIATE|DEFERRED|EXCLUSIVE|TRANSACTION)\b|\bVACUUM\b",
    re.IGNORECASE)
# SELECT ... FROM in another case only with a clause after the table (English says "select a
# node from the tree" too).
SQL_SELECT_LOWER = re.compile(r"\bselect\s+[\w*,.()\s]+\s+from\s+\w+\s+(where|order|group|limit|"
                              r"join|natural|left|inner)\b", re.IGNORECASE)

# A printf conversion other than %%.
CONVERSION = re.compile(r"%(?!%)[-+ #0-9.*'lhqzjtLQwW]*[a-zA-Z]")

# Places allowed to build SQL with data: (file relative to the repository, function, reason).
# Each entry must say why the value cannot be bound and why it cannot carry client data.
ALLOW_LIST: List[Tuple[str, str, str]] = []


# ------------------------------------------------------------------------------------------
# Tokens


@dataclass
class Tok:
    kind: str  # "str", "chr", "id", "num", "punct"
    text: str
    line: int


@dataclass
class Macro:
    name: str
    params: Optional[List[str]]  # None: object-like
    body: List[Tok]
    file: str
    line: int


@dataclass
class Source:
    """One scanned file: its tokens (without preprocessor lines) and its macros."""
    path: str
    toks: List[Tok]
    macros: List[Macro]


_PUNCT3 = ("<<=", ">>=", "...", "->*")
_PUNCT2 = ("->", "++", "--", "<<", ">>", "<=", ">=", "==", "!=", "&&", "||", "+=", "-=", "*=",
           "/=", "%=", "&=", "^=", "|=", "##", "::")
# Token kinds other than punctuators: how a literal starts (with its prefix) and the quote that
# ends it; the whole of an identifier or a number.
_LITERALS = (("str", re.compile(r"(u8|[uUL])?\""), '"'), ("chr", re.compile(r"[uUL]?'"), "'"))
_WORDS = (("id", re.compile(r"[A-Za-z_]\w*")),
          ("num", re.compile(r"\.?\d(?:[eEpP][-+]|[\w.])*")))


def _skip_string(text: str, i: int, quote: str) -> int:
    """Index just past the literal whose opening quote is at text[i]."""
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == quote or c == "\n":
            return i + 1
        i += 1
    return i


def _token_at(text: str, i: int) -> Optional[Tuple[str, int]]:
    """(kind, end) of the string or character literal, identifier or number that starts at
    text[i]; None when a punctuator starts there."""
    for kind, start, quote in _LITERALS:
        m = start.match(text, i)
        if m:
            return kind, _skip_string(text, m.end() - 1, quote)
    for kind, pattern in _WORDS:
        m = pattern.match(text, i)
        if m:
            return kind, m.end()
    return None


def tokenize(text: str, directives_allowed: bool = True
             ) -> Tuple[List[Tok], List[Tuple[int, str]]]:
    """C tokens of text without comments, and the preprocessor lines as (line, logical text
    with continuations joined). directives_allowed=False for a macro body, where # is the
    stringizing operator."""
    toks: List[Tok] = []
    directives: List[Tuple[int, str]] = []
    i, line, n = 0, 1, len(text)
    at_line_start = directives_allowed
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
            i += 1
            at_line_start = directives_allowed
            continue
        if c in " \t\r\f\v":
            i += 1
            continue
        if c == "\\" and text.startswith("\n", i + 1):
            i += 2
            line += 1
            continue
        if text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
            continue
        if text.startswith("/*", i):
            end = text.find("*/", i + 2)
            end = n if end < 0 else end + 2
            line += text.count("\n", i, end)
            i = end
            continue
        if c == "#" and at_line_start:
            start_line = line
            j = i
            buf = []
            while j < n:
                if text.startswith("\\\n", j):
                    j += 2
                    line += 1
                    buf.append(" ")
                    continue
                if text.startswith("/*", j):
                    end = text.find("*/", j + 2)
                    end = n if end < 0 else end + 2
                    line += text.count("\n", j, end)
                    buf.append(" ")
                    j = end
                    continue
                if text.startswith("//", j):
                    while j < n and text[j] != "\n":
                        j += 1
                    continue
                if text[j] in "\"'":
                    k = _skip_string(text, j, text[j])
                    buf.append(text[j:k])
                    j = k
                    continue
                if text[j] == "\n":
                    break
                buf.append(text[j])
                j += 1
            directives.append((start_line, "".join(buf)))
            i = j
            continue
        at_line_start = False
        found = _token_at(text, i)
        if found:
            kind, end = found
            toks.append(Tok(kind, text[i:end], line))
            i = end
            continue
        for p in _PUNCT3 + _PUNCT2:
            if text.startswith(p, i):
                toks.append(Tok("punct", p, line))
                i += len(p)
                break
        else:
            toks.append(Tok("punct", c, line))
            i += 1
    return toks, directives


def parse_define(line: int, text: str, path: str) -> Optional[Macro]:
    """The macro of a `#define` line, or None for other directives."""
    m = re.match(r"\s*#\s*define\s+([A-Za-z_]\w*)(\([^)]*\))?", text)
    if not m:
        return None
    params = None
    if m.group(2) is not None:
        params = [p.strip() for p in m.group(2)[1:-1].split(",") if p.strip()]
    body, _ = tokenize(text[m.end():], directives_allowed=False)
    for t in body:
        t.line = line
    return Macro(m.group(1), params, body, path, line)


def load_source(path: str, text: str) -> Source:
    toks, directives = tokenize(text)
    macros = [m for m in (parse_define(ln, d, path) for ln, d in directives) if m]
    return Source(path, toks, macros)


# ------------------------------------------------------------------------------------------
# Small parsing helpers


def match_close(toks: Sequence[Tok], i: int) -> int:
    """Index of the bracket closing the one at toks[i] (or len(toks))."""
    pairs = {"(": ")", "[": "]", "{": "}"}
    opening = toks[i].text
    closing = pairs[opening]
    depth = 0
    for j in range(i, len(toks)):
        t = toks[j]
        if t.kind != "punct":
            continue
        if t.text == opening:
            depth += 1
        elif t.text == closing:
            depth -= 1
            if depth == 0:
                return j
    return len(toks)


def match_open(toks: Sequence[Tok], i: int) -> int:
    """Index of the bracket opening the one that closes at toks[i] (or -1)."""
    pairs = {")": "(", "]": "[", "}": "{"}
    closing = toks[i].text
    opening = pairs[closing]
    depth = 0
    for j in range(i, -1, -1):
        if toks[j].text == closing:
            depth += 1
        elif toks[j].text == opening:
            depth -= 1
            if depth == 0:
                return j
    return -1


def split_top(toks: Sequence[Tok], sep: str = ",") -> List[List[Tok]]:
    """toks split at separators outside brackets."""
    out: List[List[Tok]] = [[]]
    depth = 0
    for t in toks:
        if t.kind == "punct" and t.text in "([{":
            depth += 1
        elif t.kind == "punct" and t.text in ")]}":
            depth -= 1
        if depth == 0 and t.kind == "punct" and t.text == sep:
            out.append([])
        else:
            out[-1].append(t)
    return out if out != [[]] else []


def literal_text(tok: Tok) -> str:
    """The characters of a string literal token, escapes left as written."""
    body = tok.text[tok.text.index('"') + 1:]
    return body[:-1] if body.endswith('"') else body


def strip_parens_and_casts(expr: List[Tok]) -> List[Tok]:
    """expr without enclosing parentheses and leading casts such as (const char *)."""
    type_words = {"char", "const", "unsigned", "signed", "void", "uint8_t", "int8_t"}
    while expr:
        if expr[0].kind == "punct" and expr[0].text == "(":
            end = match_close(expr, 0)
            if end == len(expr) - 1:
                expr = expr[1:-1]
                continue
            inner = expr[1:end]
            is_cast = bool(inner) and all(t.kind == "id" or t.text == "*" for t in inner) and (
                inner[-1].text == "*" or any(t.text in type_words for t in inner))
            if is_cast:
                expr = expr[end + 1:]
                continue
        break
    return expr


@dataclass
class Function:
    name: str
    params: List[str]
    static: bool
    body_start: int  # index of "{"
    body_end: int    # index of the matching "}"


def find_functions(toks: List[Tok]) -> List[Function]:
    """Function definitions: `name ( params ) {` at file scope."""
    out: List[Function] = []
    depth = 0
    i = 0
    stmt_start = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "punct" and t.text == "{" and depth == 0:
            if i > 0 and toks[i - 1].text == ")":
                close = i - 1
                j = match_open(toks, close)
                if j > 0 and toks[j - 1].kind == "id":
                    params = [param_name(p) for p in split_top(toks[j + 1:close])]
                    decl = toks[stmt_start:j - 1]
                    end = match_close(toks, i)
                    out.append(Function(toks[j - 1].text, [p or "" for p in params],
                                        any(x.text == "static" for x in decl), i, end))
                    i = end + 1
                    stmt_start = i
                    continue
            end = match_close(toks, i)
            i = end + 1
            continue
        if t.kind == "punct" and t.text in (";", "}") and depth == 0:
            stmt_start = i + 1
        i += 1
    return out


def param_name(p: List[Tok]) -> Optional[str]:
    """The name declared by one parameter (None for `void` or an unnamed one)."""
    ids = [t for t in p if t.kind == "id"]
    if not ids or (len(p) == 1 and p[0].text == "void"):
        return None
    # int (*cb)(void *): the name is inside the first parentheses
    for k, t in enumerate(p):
        if t.text == "(" and k + 2 < len(p) and p[k + 1].text == "*" and p[k + 2].kind == "id":
            return p[k + 2].text
    # char buf[]: the identifier before the first "["
    for k, t in enumerate(p):
        if t.text == "[":
            return p[k - 1].text if k > 0 and p[k - 1].kind == "id" else None
    last = ids[-1]
    keywords = {"const", "volatile", "restrict", "unsigned", "signed", "int", "char", "long",
                "short", "double", "float", "struct", "enum", "union", "void", "size_t"}
    return None if last.text in keywords else last.text


# ------------------------------------------------------------------------------------------
# Constants: which names stand for literal text


@dataclass
class Constant:
    name: str
    elements: Optional[List[List[Tok]]]  # initializer expressions; None: not constant
    file: str
    line: int


def find_constants(src: Source) -> List[Constant]:
    """Every `... NAME ... = initializer;` declaration of char text in src, with whether it is
    constant: a const char array, a `char *const` pointer or an array of `const char *const`
    (otherwise the value may change at run time, and elements is None). Plain assignments to
    an existing name (`sql = buf;`) are recorded as non-constant too."""
    toks = src.toks
    out: List[Constant] = []
    stmt_start = 0
    i = 0
    while i < len(toks):
        t = toks[i]
        if t.kind == "punct" and t.text in (";", "{", "}"):
            stmt_start = i + 1
            i += 1
            continue
        if t.kind == "punct" and t.text == "=" and i > stmt_start:
            decl = toks[stmt_start:i]
            name_idx = _declared_name(decl)
            if name_idx is not None:
                name = decl[name_idx].text
                has_char = any(x.text == "char" for x in decl[:name_idx])
                # the initializer runs to the next ";" at this level
                j = i + 1
                depth = 0
                while j < len(toks):
                    x = toks[j]
                    if x.kind == "punct" and x.text in "([{":
                        depth += 1
                    elif x.kind == "punct" and x.text in ")]}":
                        depth -= 1
                    elif x.kind == "punct" and x.text in (";", ",") and depth == 0:
                        break
                    j += 1
                init = toks[i + 1:j]
                is_decl = has_char and decl[0].text not in ("return",)
                if is_decl:
                    const = _is_const_text(decl, name_idx)
                    elements: Optional[List[List[Tok]]] = None
                    if const:
                        if init and init[0].text == "{":
                            elements = [_strip_designator(e) for e in
                                        split_top(init[1:match_close(init, 0)])]
                        else:
                            elements = [init]
                    out.append(Constant(name, elements, src.path, t.line))
                elif len(decl) == 1 and decl[0].kind == "id":
                    out.append(Constant(name, None, src.path, t.line))  # an assignment
                i = j
                continue
        i += 1
    return out


def _declared_name(decl: List[Tok]) -> Optional[int]:
    """Index of the name in a declarator such as `static const char *const NAME[N]`."""
    k = len(decl) - 1
    while k >= 0 and decl[k].text == "]":  # over each [N] back to the name
        k = match_open(decl, k) - 1
    if k >= 0 and decl[k].kind == "id":
        return k
    return None


def _is_const_text(decl: List[Tok], name_idx: int) -> bool:
    """Whether the declared text cannot change: `const char NAME[]`, `const char *const NAME`,
    `const char *const NAME[]`."""
    before = [t.text for t in decl[:name_idx]]
    is_array = name_idx + 1 < len(decl) and decl[name_idx + 1].text == "["
    if "*" in before:
        star = len(before) - 1 - before[::-1].index("*")
        after_star = before[star + 1:]
        # the pointer itself and the characters must both be const
        return "const" in after_star and "const" in before[:star]
    return is_array and "const" in before


def _strip_designator(e: List[Tok]) -> List[Tok]:
    """An initializer element without `[X] =` or `.x =`."""
    if e and e[0].text == "[":
        end = match_close(e, 0)
        if end + 1 < len(e) and e[end + 1].text == "=":
            return e[end + 2:]
    if len(e) > 2 and e[0].text == "." and e[2].text == "=":
        return e[3:]
    return e


# ------------------------------------------------------------------------------------------
# Classifying an expression


@dataclass
class Verdict:
    """What an expression passed as SQL is: literal (with the texts it can be), the parameter
    number `param` of the enclosing function, or data (with why)."""
    kind: str  # "literal", "param", "data"
    texts: List[str] = field(default_factory=list)
    param: int = -1
    why: str = ""


class Checker:
    """The whole-tree checker."""

    def __init__(self, sources: Sequence[Source]):
        self.sources = list(sources)
        self.macros: Dict[str, List[Macro]] = {}
        for s in self.sources:
            for m in s.macros:
                self.macros.setdefault(m.name, []).append(m)
        self.constants: Dict[str, List[Constant]] = {}
        self.file_constants: Dict[str, Dict[str, List[Constant]]] = {}
        for s in self.sources:
            per_file: Dict[str, List[Constant]] = {}
            for c in find_constants(s):
                per_file.setdefault(c.name, []).append(c)
                self.constants.setdefault(c.name, []).append(c)
            self.file_constants[s.path] = per_file
        self.functions: Dict[str, List[Function]] = {
            s.path: find_functions(s.toks) for s in self.sources}
        self.violations: List[Tuple[str, int, str]] = []
        self.call_sites = 0
        self.statements = 0
        self.sql_texts: Set[str] = set()

    # -- expressions ---------------------------------------------------------------------

    def classify(self, expr: List[Tok], src: Source, fn: Optional[Function],
                 depth: int = 0) -> Verdict:
        expr = strip_parens_and_casts(list(expr))
        if not expr:
            return Verdict("data", why="an empty expression")
        if depth > 40:
            return Verdict("data", why="macros nested too deeply")
        # cond ? a : b
        parts = split_top(expr, "?")
        if len(parts) >= 2:
            rest = [t for part in parts[1:] for t in part + [Tok("punct", "?", 0)]][:-1]
            branches = split_top(rest, ":")
            if len(branches) >= 2:
                a = self.classify(branches[0], src, fn, depth + 1)
                b = self.classify([t for br in branches[1:] for t in br], src, fn, depth + 1)
                return self._combine([a, b])
        # NAME[index] of a constant table
        if len(expr) >= 4 and expr[0].kind == "id" and expr[1].text == "[" \
                and match_close(expr, 1) == len(expr) - 1:
            return self._constant(expr[0].text, src, fn, depth, table=True)
        # a single parameter of the enclosing function
        if len(expr) == 1 and expr[0].kind == "id" and fn is not None \
                and expr[0].text in fn.params and not self._is_literal_name(expr[0].text, src):
            return Verdict("param", param=fn.params.index(expr[0].text))
        # a concatenation of literals, literal macros and constants
        texts = [""]
        i = 0
        while i < len(expr):
            t = expr[i]
            if t.kind == "str":
                texts = [x + literal_text(t) for x in texts]
                i += 1
                continue
            if t.kind == "id" and t.text in self.macros:
                macro_verdict, used = self._expand(expr, i, src, fn, depth)
                if macro_verdict.kind != "literal":
                    return macro_verdict
                texts = [x + y for x in texts for y in (macro_verdict.texts or [""])][:64]
                i += used
                continue
            if t.kind == "id" and len(expr) == 1:
                return self._constant(t.text, src, fn, depth, table=False)
            return Verdict("data", why=f"'{t.text}' is not constant text")
        return Verdict("literal", texts=texts)

    def _combine(self, verdicts: List[Verdict]) -> Verdict:
        for v in verdicts:
            if v.kind == "data":
                return v
        for v in verdicts:
            if v.kind == "param":
                return v
        return Verdict("literal", texts=[t for v in verdicts for t in v.texts])

    def _is_literal_name(self, name: str, src: Source) -> bool:
        return name in self.macros

    def _constant(self, name: str, src: Source, fn: Optional[Function], depth: int,
                  table: bool) -> Verdict:
        if name in self.macros and not table:
            return self.classify([Tok("id", name, 0)], src, fn, depth + 1)
        found = self.file_constants.get(src.path, {}).get(name) or self.constants.get(name)
        if not found:
            what = "table" if table else "variable"
            return Verdict("data", why=f"'{name}' is not a constant {what} of literal text")
        verdicts = []
        for c in found:
            if c.elements is None:
                return Verdict("data", why=f"'{name}' ({c.file}:{c.line}) is not const text: "
                                           "its value can change at run time")
            if not table and len(c.elements) != 1:
                return Verdict("data", why=f"'{name}' is a table used without an index")
            owner = self._source(c.file)
            for e in c.elements:
                if not e:
                    continue
                v = self.classify(e, owner, None, depth + 1)
                if v.kind != "literal":
                    return Verdict("data", why=f"'{name}' ({c.file}:{c.line}) holds text that "
                                               f"is not constant: {v.why}")
                verdicts.append(v)
        return self._combine(verdicts) if verdicts else Verdict("data", why=f"'{name}' is empty")

    def _source(self, path: str) -> Source:
        for s in self.sources:
            if s.path == path:
                return s
        raise KeyError(path)

    def _expand(self, expr: List[Tok], i: int, src: Source, fn: Optional[Function],
                depth: int) -> Tuple[Verdict, int]:
        """The verdict of the macro invocation at expr[i] and the tokens it used."""
        name = expr[i].text
        verdicts = []
        used = 1
        for m in self.macros[name]:
            if m.params is None:
                verdicts.append(self.classify(m.body, src, fn, depth + 1) if m.body else
                                Verdict("data", why=f"macro {name} is empty"))
                continue
            if i + 1 >= len(expr) or expr[i + 1].text != "(":
                return Verdict("data", why=f"function-like macro {name} without arguments"), 1
            close = match_close(expr, i + 1)
            args = split_top(expr[i + 2:close])
            used = close - i + 1
            verdicts.append(self._expand_call(m, args, src, fn, depth))
        return self._combine(verdicts), used

    def _expand_call(self, m: Macro, args: List[List[Tok]], src: Source,
                     fn: Optional[Function], depth: int) -> Verdict:
        """A function-like macro: `#param` is always literal (it spells source tokens); a plain
        use of a parameter needs a literal argument; other tokens as usual."""
        params = m.params or []
        body = m.body
        out: List[Tok] = []
        k = 0
        while k < len(body):
            t = body[k]
            if t.text == "#" and k + 1 < len(body) and body[k + 1].text in params:
                arg = args[params.index(body[k + 1].text)] if params.index(
                    body[k + 1].text) < len(args) else []
                out.append(Tok("str", '"' + " ".join(a.text for a in arg) + '"', t.line))
                k += 2
                continue
            if t.kind == "id" and t.text in params:
                idx = params.index(t.text)
                arg = args[idx] if idx < len(args) else []
                # an argument that a further macro stringizes stays as written
                out.extend(arg)
                k += 1
                continue
            out.append(t)
            k += 1
        if len(out) >= 1 and all(t.kind == "str" for t in out):
            return Verdict("literal", texts=["".join(literal_text(t) for t in out)])
        return self.classify(out, src, fn, depth + 1)

    # -- the scan ------------------------------------------------------------------------

    def enclosing(self, src: Source, index: int) -> Optional[Function]:
        for f in self.functions[src.path]:
            if f.body_start < index < f.body_end:
                return f
        return None

    def calls(self, names: Iterable[str]) -> Iterable[Tuple[Source, int, str, List[List[Tok]]]]:
        """Every call of one of names inside a function body: (source, index, name, args)."""
        wanted = set(names)
        for src in self.sources:
            toks = src.toks
            for i, t in enumerate(toks):
                if t.kind != "id" or t.text not in wanted:
                    continue
                if i + 1 >= len(toks) or toks[i + 1].text != "(":
                    continue
                if self.enclosing(src, i) is None:
                    continue  # a prototype or a definition
                if i > 0 and toks[i - 1].text in (".", "->"):
                    continue  # a member, not the function
                close = match_close(toks, i + 1)
                yield src, i, t.text, split_top(toks[i + 2:close])

    def violation(self, src: Source, line: int, fn: Optional[Function], msg: str) -> None:
        rel = src.path
        for file, func, _why in ALLOW_LIST:
            if rel == file and fn is not None and fn.name == func:
                return
        self.violations.append((rel, line, msg))

    def check_sinks(self) -> None:
        """The SQL argument of every sink, following wrappers to their callers."""
        sinks: Dict[str, Tuple[int, str]] = {n: (k, n) for n, k in SQL_SINKS.items()}
        wrappers: Dict[str, Tuple[Source, int, Function]] = {}
        done: Set[str] = set()
        pending = list(sinks)
        while pending:
            name = pending.pop()
            if name in done:
                continue
            done.add(name)
            index, origin = sinks[name]
            found = 0
            for src, i, called, args in self.calls([name]):
                found += 1
                fn = self.enclosing(src, i)
                line = src.toks[i].line
                self.call_sites += 1
                if index >= len(args):
                    self.violation(src, line, fn, f"{called}(): no SQL argument")
                    continue
                v = self.classify(args[index], src, fn)
                if v.kind == "literal":
                    self.statements += len(v.texts)
                    self.sql_texts.update(v.texts)
                elif v.kind == "param":
                    assert fn is not None
                    if fn.name not in sinks:
                        sinks[fn.name] = (v.param, origin)
                        wrappers[fn.name] = (src, line, fn)
                        pending.append(fn.name)
                else:
                    shown = " ".join(t.text for t in args[index])[:80]
                    via = "" if called == origin else f" (its SQL reaches {origin})"
                    self.violation(src, line, fn, f"{called}(){via}: the SQL argument `{shown}` "
                                                  f"is not constant text: {v.why}")
            if name in wrappers and found == 0:
                # A function passing its parameter on as SQL that nothing here calls: an entry
                # point for SQL text whose callers cannot be checked.
                wsrc, wline, wfn = wrappers[name]
                self.violation(wsrc, wline, wfn,
                               f"{name}() passes its parameter "
                               f"'{wfn.params[sinks[name][0]]}' on as SQL ({origin}) and no "
                               "caller in the tree shows that it is constant text")

    def check_formatters(self) -> None:
        """SQLite's printf family and string builder: any formatted or built text."""
        for src, i, called, args in self.calls(SQLITE_FORMATTERS):
            fn = self.enclosing(src, i)
            line = src.toks[i].line
            k = SQLITE_FORMATTERS[called]
            v = self.classify(args[k], src, fn) if k < len(args) else Verdict("data", why="none")
            if v.kind != "literal":
                self.violation(src, line, fn, f"{called}(): the format is not constant text, so "
                                              "the text is built at run time")
            elif any(CONVERSION.search(t) for t in v.texts):
                self.violation(src, line, fn, f"{called}(): text formatted with data "
                                              f"({v.texts[0][:60]!r}); bind values instead")
        for src, i, called, _args in self.calls(SQLITE_BUILDERS):
            fn = self.enclosing(src, i)
            self.violation(src, src.toks[i].line, fn,
                           f"{called}(): SQL text assembled at run time; use a constant "
                           "statement with bound values")

    def check_builders(self) -> None:
        """C text building whose format or source looks like SQL."""
        for src, i, called, args in self.calls(C_BUILDERS):
            k = C_BUILDERS[called]
            if k >= len(args):
                continue
            fn = self.enclosing(src, i)
            texts = self.literal_parts(args[k], src, fn)
            for text in texts:
                if looks_like_sql(text):
                    self.violation(src, src.toks[i].line, fn,
                                   f"{called}(): SQL text built in a buffer ({text[:60]!r}); "
                                   "SQL must be a constant with bound values")
                    break

    def literal_parts(self, expr: List[Tok], src: Source, fn: Optional[Function]) -> List[str]:
        """The texts of every literal and constant in expr (even when expr is not constant as a
        whole), to see whether it looks like SQL."""
        v = self.classify(expr, src, fn)
        if v.kind == "literal":
            return v.texts
        out = []
        for t in expr:
            if t.kind == "str":
                out.append(literal_text(t))
            elif t.kind == "id" and (t.text in self.macros or t.text in self.constants):
                w = self.classify([t], src, fn)
                if w.kind == "literal":
                    out.extend(w.texts)
        return out

    def check_macros(self) -> None:
        """A SQLite call inside a macro body cannot be followed to its arguments: refused, so
        that wrapping a call in a macro cannot hide it."""
        watched = set(SQL_SINKS) | set(SQLITE_FORMATTERS) | set(SQLITE_BUILDERS)
        for src in self.sources:
            for m in src.macros:
                called = [t.text for t in m.body if t.kind == "id" and t.text in watched]
                if called:
                    self.violations.append((src.path, m.line, f"macro {m.name} calls "
                                            f"{called[0]}(): write the call out so that its "
                                            "SQL can be checked"))

    def run(self) -> None:
        self.check_macros()
        self.check_sinks()
        self.check_formatters()
        self.check_builders()
        self.violations.sort()


def looks_like_sql(text: str) -> bool:
    return bool(SQL_LOOKS.search(text) or SQL_SELECT_LOWER.search(text))


# ------------------------------------------------------------------------------------------
# The tree


def scanned_files(root: Path) -> List[Path]:
    out = []
    for d in SCANNED_DIRS:
        base = root / d
        if not base.is_dir():
            continue
        for p in sorted(base.rglob("*")):
            if p.suffix in (".c", ".h") and p.is_file() \
                    and "tests" not in p.relative_to(root).parts:
                out.append(p)
    return out


def check_tree(root: Path, verbose: bool) -> int:
    files = scanned_files(root)
    if not files:
        return fail(f"no C sources under {', '.join(SCANNED_DIRS)} of {root}")
    sources = [load_source(str(p.relative_to(root)), p.read_text("utf-8", "replace"))
               for p in files]
    checker = Checker(sources)
    checker.run()
    if verbose:
        for text in sorted(checker.sql_texts):
            print("  SQL: " + re.sub(r"\s+", " ", text)[:110])
    for file, line, msg in checker.violations:
        print(f"{file}:{line}: {msg}")
    figure("files_scanned", len(files))
    figure("call_sites", checker.call_sites)
    figure("statements", checker.statements)
    figure("distinct_sql_texts", len(checker.sql_texts))
    figure("allow_listed", len(ALLOW_LIST))
    figure("violations", len(checker.violations))
    if checker.violations:
        return fail(f"{len(checker.violations)} place(s) build SQL text with data (above)")
    if checker.statements == 0:
        return fail("no SQL statement found at all; the checker no longer sees the code")
    print("PASS")
    return 0


# ------------------------------------------------------------------------------------------
# The self-test

HEADER = """
#include <sqlite3.h>
#define COLS "id, state"
#define STR_(x) #x
#define STR(x) STR_(x)
#define PAGES 16384
"""

# (name, C code, number of violations expected)
SELF_TEST_CASES: List[Tuple[str, str, int]] = [
    # --- must be caught
    ("mprintf with %s",
     'char *f(sqlite3 *db, const char *x) { return sqlite3_mprintf("SELECT * FROM jobs WHERE id = '
     "'%s'\", x); }", 1),
    ("mprintf with %q", 'void f(const char *x) { char *s = sqlite3_mprintf("DELETE FROM t WHERE '
     'k = %Q", x); sqlite3_free(s); }', 1),
    ("snprintf of SELECT with %s",
     'void f(sqlite3 *db, const char *s) { char sql[256]; snprintf(sql, sizeof sql, '
     '"SELECT id FROM jobs WHERE name = \'%s\'", s); }', 1),
    ("prepare of a runtime buffer",
     "void fill(char *b); void f(sqlite3 *db) { char buf[128]; sqlite3_stmt *st; fill(buf); "
     "sqlite3_prepare_v2(db, buf, -1, &st, NULL); }", 1),
    ("snprintf into a buffer then prepare",
     'void f(sqlite3 *db, int n) { char sql[64]; sqlite3_stmt *st; '
     'snprintf(sql, sizeof sql, "PRAGMA cache_size = %d", n); '
     'sqlite3_prepare_v2(db, sql, -1, &st, 0); }', 2),
    ("exec of a heap string",
     "void f(sqlite3 *db, char *(*make)(void)) { char *q = make(); sqlite3_exec(db, q, 0, 0, 0); }",
     1),
    ("wrapper called with data",
     "static int run(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, 0, 0, 0); }\n"
     "const char *input(void);\n"
     "void g(sqlite3 *db) { const char *user = input(); run(db, \"BEGIN\"); run(db, user); }", 1),
    ("wrapper of a wrapper called with data",
     "static int run(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, 0, 0, 0); }\n"
     "static int run2(sqlite3 *db, const char *q) { return run(db, q); }\n"
     "void g(sqlite3 *db) { char b[32]; b[0] = 0; run2(db, \"COMMIT\"); run2(db, b); }", 1),
    ("strcat of SQL",
     'void f(char *q, const char *id) { strcpy(q, "DELETE FROM jobs WHERE id = \'"); '
     'strcat(q, id); strcat(q, "\'"); }', 1),
    ("a pointer that can change",
     'static const char *q = "SELECT 1 FROM t"; void f(sqlite3 *db, char *b) { sqlite3_stmt *s; '
     'q = b; sqlite3_prepare_v2(db, q, -1, &s, 0); }', 1),
    ("a writable array",
     'static char q[] = "SELECT 1 FROM t"; void f(sqlite3 *db) { sqlite3_stmt *s; '
     'sqlite3_prepare_v2(db, q, -1, &s, 0); }', 1),
    ("a ternary with data in one branch",
     'void fill(char *b); void f(sqlite3 *db, int a) { sqlite3_stmt *s; char b[64]; fill(b); '
     'sqlite3_prepare_v2(db, a ? "SELECT 1" : b, -1, &s, 0); }', 1),
    ("a function taking SQL text that nothing calls",
     "int run_sql(sqlite3 *db, const char *sql) { return sqlite3_exec(db, sql, 0, 0, 0); }", 1),
    ("a macro gluing data",
     '#define Q(x) "SELECT " x " FROM t"\nvoid f(sqlite3 *db, char *b) { sqlite3_stmt *s; '
     'sqlite3_prepare_v2(db, Q(b), -1, &s, 0); }', 1),
    ("a table with a runtime entry",
     'static const char *tab[2]; void f(sqlite3 *db, int i) { sqlite3_stmt *s; '
     'sqlite3_prepare_v2(db, tab[i], -1, &s, 0); }', 1),
    ("a const table holding a non-const pointer",
     'static char dyn[64]; static const char *const tab[] = {"SELECT 1", dyn}; '
     'void f(sqlite3 *db, int i) { sqlite3_stmt *s; sqlite3_prepare_v2(db, tab[i], -1, &s, 0); }',
     1),
    ("sqlite3_str builder",
     "void f(sqlite3 *db, const char *c) { sqlite3_str *s = sqlite3_str_new(db); "
     "sqlite3_str_appendall(s, c); }", 1),
    ("lower-case SQL in sprintf",
     'void f(char *b, const char *n) { sprintf(b, "select id from jobs where name=\'%s\'", n); }',
     1),
    ("an insert built with asprintf",
     'void f(char **p, long v) { asprintf(p, "INSERT INTO meta(key, value) VALUES (\'x\', %ld)", '
     'v); }', 1),
    ("a SQLite call hidden in a macro",
     "#define PREP(db, q, st) sqlite3_prepare_v2(db, q, -1, st, 0)\n"
     "void f(sqlite3 *db, char *b) { sqlite3_stmt *s; PREP(db, b, &s); }", 1),
    # --- must pass
    ("prepare of a literal",
     "void f(sqlite3 *db) { sqlite3_stmt *s; sqlite3_prepare_v2(db, \"SELECT 1\", -1, &s, NULL); }",
     0),
    ("a const array and a const pointer",
     'static const char SQL_X[] = "SELECT " COLS " FROM jobs WHERE id = ?1";\n'
     'static const char *const SQL_Y = "DELETE FROM jobs WHERE id = ?1";\n'
     "void f(sqlite3 *db) { sqlite3_stmt *s; sqlite3_prepare_v2(db, SQL_X, -1, &s, 0); "
     "sqlite3_prepare_v3(db, SQL_Y, -1, 0, &s, 0); }", 0),
    ("a #define and concatenation",
     '#define SQL_Z "UPDATE jobs SET state = ?2 " "WHERE id = ?1"\n'
     "void f(sqlite3 *db) { sqlite3_stmt *s; sqlite3_prepare_v2(db, SQL_Z, -1, &s, 0); }", 0),
    ("a designated table indexed at run time",
     'enum { A, B, N_ }; static const char *const stmt_sql[N_] = { [A] = "BEGIN IMMEDIATE", '
     '[B] = "SELECT " COLS " FROM jobs" };\n'
     "void f(sqlite3 *db, int id) { sqlite3_stmt *s; "
     "sqlite3_prepare_v3(db, stmt_sql[id], -1, 0, &s, NULL); }", 0),
    ("a ternary of literals and a stringized number",
     "void f(sqlite3 *db, int full) { sqlite3_exec(db, full ? \"PRAGMA synchronous = FULL\" : "
     "\"PRAGMA synchronous = NORMAL\", 0, 0, 0); "
     "sqlite3_exec(db, \"PRAGMA wal_autocheckpoint = \" STR(PAGES), 0, 0, 0); }", 0),
    ("a wrapper called with literals only",
     "static int run(sqlite3 *db, const char *sql, const char *what) "
     "{ (void)what; return sqlite3_exec(db, sql, NULL, NULL, NULL); }\n"
     'static const char *const migrations[] = { "CREATE TABLE t (a)", "ALTER TABLE t ADD b" };\n'
     "void g(sqlite3 *db, int v) { run(db, \"PRAGMA foreign_keys = ON\", \"fk\"); "
     "run(db, migrations[v], \"migration\"); }", 0),
    ("text that is not SQL",
     'void f(char *b, size_t n, const char *id) { snprintf(b, n, "job %s: select a node from '
     'the tree; delete the job", id); strcat(b, "update the request"); }', 0),
    ("SQL in comments and strings only",
     '/* sqlite3_exec(db, buf, 0, 0, 0); */ void f(void) { // sqlite3_mprintf("%s", x)\n'
     'const char *m = "call sqlite3_prepare_v2(db, buf) with care"; (void)m; }', 0),
    ("sqlite3_mprintf without a conversion",
     'char *f(void) { return sqlite3_mprintf("SELECT 1"); }', 0),
    ("a parenthesized and cast literal",
     "void f(sqlite3 *db) { sqlite3_stmt *s; "
     "sqlite3_prepare_v2(db, (const char *)(\"SELECT 2\"), -1, &s, 0); }", 0),
]


def self_test() -> int:
    wrong = 0
    for name, code, expected in SELF_TEST_CASES:
        src = load_source(f"snippet:{name}", HEADER + code)
        checker = Checker([src])
        checker.run()
        got = len(checker.violations)
        verdict = "ok" if got == expected else "WRONG"
        print(f"{verdict:5} {name}: {got} violation(s), expected {expected}")
        if got != expected:
            wrong += 1
            for _, line, msg in checker.violations:
                print(f"      line {line}: {msg}")
    caught = sum(1 for _, _, e in SELF_TEST_CASES if e > 0)
    figure("self_test_cases", len(SELF_TEST_CASES))
    figure("must_be_caught", caught)
    figure("must_pass", len(SELF_TEST_CASES) - caught)
    figure("wrong_verdicts", wrong)
    if wrong:
        return fail(f"{wrong} wrong verdict(s) of the checker")
    print("PASS")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--self-test", action="store_true",
                    help="check the checker on in-memory snippets instead of the tree")
    ap.add_argument("--root", default=str(REPO), help="the source tree (default: this one)")
    ap.add_argument("-v", "--verbose", action="store_true", help="list the SQL texts found")
    args = ap.parse_args(argv)
    if args.self_test:
        return self_test()
    return check_tree(Path(args.root).resolve(), args.verbose)


if __name__ == "__main__":
    sys.exit(main())
