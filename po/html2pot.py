#!/usr/bin/env python3
"""Extracts the dashboard page's texts for translation (xgettext reads no
HTML): the text of every element marked data-i18n, and the attributes named
by data-i18n-attr ("title,aria-label"), of node/service/web/index.html, as a .pot on
stdout. dashboard.js translates the same texts at load with the same rule:
whitespace runs become one space, ends trimmed."""
import html.parser
import sys


def norm(s):
    return " ".join(s.split())


def po_str(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found = []  # (msgid, line)
        self.stack = []  # [tag, collecting text?, text]

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for name in filter(None, (a.get("data-i18n-attr") or "").split(",")):
            if a.get(name.strip()):
                self.found.append((norm(a[name.strip()]), self.getpos()[0]))
        if tag in ("meta", "link", "br", "input", "img"):
            return
        self.stack.append([tag, "data-i18n" in a, "", self.getpos()[0]])

    def handle_endtag(self, tag):
        while self.stack:
            t, collect, text, line = self.stack.pop()
            if collect and norm(text):
                self.found.append((norm(text), line))
            if t == tag:
                break

    def handle_data(self, data):
        for entry in self.stack:
            if entry[1]:
                entry[2] += data


def main():
    path = sys.argv[1]
    p = Page()
    with open(path, encoding="utf-8") as f:
        p.feed(f.read())
    seen = set()
    print('msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n')
    for msgid, line in p.found:
        if msgid in seen:
            continue
        seen.add(msgid)
        print(f"#: {path}\nmsgid {po_str(msgid)}\nmsgstr \"\"\n")


if __name__ == "__main__":
    main()
