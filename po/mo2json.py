#!/usr/bin/env python3
"""The dashboard's strings for one language, as JSON (build time,
cmake/I18n.cmake): the node/service/web/ entries of po/LANG.po (compiled to a .mo by
msgfmt) and the region names of tools/data/kz-regions.tsv in that language.

  {"lang": "ru", "plural": "ru", "messages": {"msgid": "msgstr" | [forms],
   "ctx\\u0004msgid": ...}, "regions": {"KZ-75": "Алматы", ...}}

"plural" names the Plural-Forms rule (the same known rules as node/base/i18n.c):
"n!=1", "ru" or "one"; an unknown rule fails the build."""
import argparse
import gettext
import json
import re

RULES = {
    "nplurals=2;plural=(n!=1);": "n!=1",
    "nplurals=3;plural=(n%10==1&&n%100!=11?0:n%10>=2&&n%10<=4&&(n%100<10||n%100>=20)?1:2);": "ru",
    "nplurals=1;plural=0;": "one",
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--lang", required=True)
    ap.add_argument("--mo")
    ap.add_argument("--regions", required=True)
    ap.add_argument("-o", dest="out", required=True)
    a = ap.parse_args()
    messages, plural = {}, "n!=1"
    if a.mo:
        with open(a.mo, "rb") as f:
            t = gettext.GNUTranslations(f)
        forms = {}
        for key, value in t._catalog.items():
            if key == "":
                m = re.search(r"^Plural-Forms:(.*)$", value, re.M)
                if m:
                    rule = re.sub(r"\s", "", m.group(1))
                    if rule not in RULES:
                        raise SystemExit(f"{a.mo}: unknown Plural-Forms {m.group(1)!r}")
                    plural = RULES[rule]
            elif isinstance(key, tuple):
                forms.setdefault(key[0], {})[key[1]] = value
            elif value:
                messages[key] = value
        for msgid, by_n in forms.items():
            messages[msgid] = [by_n[i] for i in sorted(by_n)]
    col = {"en": 1, "kk": 2, "ru": 3}[a.lang]
    regions = {}
    with open(a.regions, encoding="utf-8") as f:
        for line in f:
            if line.startswith("#") or line.startswith("code\t") or not line.strip():
                continue
            cells = line.rstrip("\n").split("\t")
            regions[cells[0]] = cells[col]
    with open(a.out, "w", encoding="utf-8") as f:
        json.dump({"lang": a.lang, "plural": plural, "messages": messages, "regions": regions},
                  f, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
