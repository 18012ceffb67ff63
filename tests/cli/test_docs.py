#!/usr/bin/env python3
"""The documentation against the code: the journal catalog covers exactly the
MESSAGE_IDs refreshd logs and systemd accepts it; the man pages build and
render without groff warnings; refreshd(8) names every command-line option and
refreshd.yaml(5) every config key.

Usage: test_docs.py SOURCE_ROOT BUILD_DIR
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

SRC = None
BUILD = None

HEX_ID = re.compile(r"^[0-9a-f]{32}$")


def read(*parts):
    with open(os.path.join(SRC, *parts), encoding="utf-8") as f:
        return f.read()


def header_ids():
    """{macro name: id} from daemon/refreshd-messages.h."""
    text = read("daemon", "refreshd-messages.h")
    return dict(re.findall(r'^#define\s+(REFRESHD_MESSAGE_\w+)\s+"([^"]*)"', text, re.M))


def catalog_entries():
    """[(id, language or None, {header: value}, body)] from systemd/refreshd.catalog,
    read the way systemd's catalog importer reads it."""
    entries = []
    current = None
    in_header = False
    for line in read("systemd", "refreshd.catalog").splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^-- (\S+)(?: (\S+))?\s*$", line)
        if m:
            current = (m.group(1), m.group(2), {}, [])
            entries.append(current)
            in_header = True
            continue
        if current is None:
            if line.strip():
                raise AssertionError("text before the first '-- ID' line: %r" % line)
            continue
        if in_header:
            if not line.strip():
                in_header = False
                continue
            key, sep, value = line.partition(":")
            if not sep:
                raise AssertionError("entry %s: header line without ':': %r" % (current[0], line))
            current[2][key.strip()] = value.strip()
        else:
            current[3].append(line)
    return [(i, lang, h, "\n".join(b).strip()) for i, lang, h, b in entries]


def journal_fields():
    """The REFRESHD_* fields report.c can write."""
    return set(re.findall(r'"(REFRESHD_[A-Z_]+)=', read("daemon", "report.c")))


class CatalogTest(unittest.TestCase):
    def test_header_ids_are_well_formed_and_unique(self):
        ids = header_ids()
        self.assertTrue(ids, "no MESSAGE_ID found in daemon/refreshd-messages.h")
        for name, value in ids.items():
            self.assertRegex(value, HEX_ID, name)
        dups = {v for v in ids.values() if list(ids.values()).count(v) > 1}
        self.assertFalse(dups, "MESSAGE_IDs defined twice: %s" % sorted(dups))

    def test_every_id_has_an_entry_and_every_entry_an_id(self):
        ids = header_ids()
        entries = catalog_entries()
        catalog = [e[0] for e in entries if e[1] is None]
        missing = sorted(n for n, v in ids.items() if v not in catalog)
        unknown = sorted(set(catalog) - set(ids.values()))
        dups = sorted({i for i in catalog if catalog.count(i) > 1})
        self.assertFalse(missing, "MESSAGE_IDs without a catalog entry: %s" % missing)
        self.assertFalse(unknown, "catalog entries for ids not in refreshd-messages.h: %s" % unknown)
        self.assertFalse(dups, "catalog entries given twice: %s" % dups)

    def test_every_id_is_logged_by_report_c_alone(self):
        # One function per event kind, in report.c: the catalog documents
        # what those functions log, and nothing else logs a MESSAGE_ID.
        report = read("daemon", "report.c")
        unused = sorted(n for n in header_ids() if not re.search(r"\b%s\b" % n, report))
        self.assertFalse(unused, "MESSAGE_IDs defined (and documented) but never logged by daemon/report.c: %s" % unused)
        for name in sorted(os.listdir(os.path.join(SRC, "daemon"))):
            if name.endswith((".c", ".h")) and name not in ("report.c", "refreshd-messages.h"):
                text = read("daemon", name)
                used = sorted(n for n in header_ids() if re.search(r"\b%s\b" % n, text))
                self.assertFalse(used, "daemon/%s uses MESSAGE_IDs itself (%s): log through a report_*() function" %
                                 (name, used))

    def test_entries_are_complete(self):
        known_fields = journal_fields()
        self.assertTrue(known_fields, "no REFRESHD_* field found in daemon/report.c")
        for mid, _, headers, body in catalog_entries():
            with self.subTest(id=mid):
                self.assertRegex(mid, HEX_ID)
                self.assertTrue(headers.get("Subject"), "no Subject:")
                self.assertEqual(headers.get("Defined-By"), "refreshd")
                self.assertTrue(headers.get("Support"), "no Support:")
                self.assertIn("man:refreshd(8)", headers.get("Documentation", "").split())
                self.assertGreater(len(body), 100, "the explanation is missing or too short")
                # Only substitutions journalctl can fill in: REFRESHD_* fields
                # report.c writes (a missing field shows as its name).
                for field in re.findall(r"@([A-Za-z0-9_]+)@", headers["Subject"] + "\n" + body):
                    self.assertIn(field, known_fields, "@%s@ is not a field refreshd writes" % field)

    def test_journalctl_accepts_it(self):
        journalctl = shutil.which("journalctl")
        if not journalctl:
            self.skipTest("journalctl is not installed")
        with tempfile.TemporaryDirectory() as root:
            catdir = os.path.join(root, "usr", "lib", "systemd", "catalog")
            os.makedirs(catdir)
            shutil.copy(os.path.join(SRC, "systemd", "refreshd.catalog"), catdir)
            p = subprocess.run([journalctl, "--root=" + root, "--update-catalog"], capture_output=True,
                               text=True, timeout=60)
            if p.returncode != 0 and "--root" in p.stderr and "unrecognized" in p.stderr:
                self.skipTest("this journalctl has no --root")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stderr.strip(), "", "journalctl complained")
            p = subprocess.run([journalctl, "--root=" + root, "--list-catalog"], capture_output=True, text=True,
                               timeout=60)
            self.assertEqual(p.returncode, 0, p.stderr)
            listed = dict(line.split(" ", 1) for line in p.stdout.splitlines() if line.strip())
            for name, mid in header_ids().items():
                self.assertTrue(mid in listed, "%s (%s) is not in journalctl's catalog" % (name, mid))
                self.assertTrue(listed[mid].startswith("refreshd: "), listed[mid])


class ManPageTest(unittest.TestCase):
    PAGES = ["refreshd.8", "refreshd.yaml.5"]

    def built(self, page):
        path = os.path.join(BUILD, "systemd", page)
        if not os.path.exists(path):
            if shutil.which("scdoc"):
                self.fail("%s was not built although scdoc is installed" % path)
            self.skipTest("scdoc is not installed: the man pages are not built")
        return path

    def test_pages_render_without_warnings(self):
        if not shutil.which("man") or not shutil.which("groff"):
            self.skipTest("man or groff is not installed")
        env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
        env.pop("MANPAGER", None)
        env.pop("PAGER", None)
        for page in self.PAGES:
            with self.subTest(page=page):
                path = self.built(page)
                p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", path], capture_output=True,
                                   text=True, env=env, timeout=60)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stderr.strip(), "", "groff warnings for %s" % page)
                self.assertIn("NAME", p.stdout)
                self.assertIn("SEE ALSO", p.stdout)

    def test_every_option_is_documented(self):
        main = read("daemon", "main.c")
        table = re.search(r"struct option options\[\]\s*=\s*\{(.*?)\n\s*\};", main, re.S)
        self.assertTrue(table, "no option table in daemon/main.c")
        longs = re.findall(r'\{\s*"([a-z][a-z0-9-]*)"', table.group(1))
        self.assertGreaterEqual(len(longs), 5)
        shorts = re.search(r'getopt_long\([^"]*"([^"]*)"', main).group(1)
        page = read("systemd", "refreshd.8.scd")
        for opt in longs:
            self.assertTrue(re.search(r"\*--%s\*" % re.escape(opt), page), "--%s is not in refreshd.8.scd" % opt)
        for letter in re.findall(r"[A-Za-z]", shorts):
            self.assertTrue(re.search(r"\*-%s\*" % letter, page), "-%s is not in refreshd.8.scd" % letter)
        for command in re.findall(r'case COMMAND_[A-Z]+:\s*return "([a-z]+)";', main):
            self.assertTrue(re.search(r"(?m)^\*%s\*" % command, page), "command %s is not described" % command)
        for name, mid in header_ids().items():
            self.assertIn(mid, page, "%s is not listed under JOURNAL FIELDS" % name)

    def test_every_config_key_is_documented(self):
        config = read("daemon", "config.c")
        keys = []
        for table in ("zuora_keys", "env_keys"):
            m = re.search(r"KeyInfo %s\[\]\s*=\s*\{(.*?)\n\};" % table, config, re.S)
            self.assertTrue(m, "no %s in daemon/config.c" % table)
            keys += re.findall(r'\{\s*"([a-z_]+)"', m.group(1))
        m = re.search(r"#define ENV_SETTING_KEYS\(type\)(.*?)\n\n", config, re.S)
        self.assertTrue(m, "no ENV_SETTING_KEYS in daemon/config.c")
        settings = re.findall(r'\{\s*"([a-z_]+)"', m.group(1))
        keys += settings
        self.assertGreaterEqual(len(set(keys)), 15)
        page = read("systemd", "refreshd.yaml.5.scd")
        for key in sorted(set(keys)):
            # A definition of its own: a line starting with the key in bold.
            self.assertTrue(re.search(r"(?m)^\*%s\*" % re.escape(key), page),
                            "'%s' is not described in refreshd.yaml.5.scd" % key)
        m = re.search(r"KeyInfo top_keys\[\]\s*=\s*\{(.*?)\n\};", config, re.S)
        for section in re.findall(r'\{\s*"([a-z_]+)"', m.group(1)) if m else []:
            self.assertTrue(re.search(r"(?m)^# SECTION %s$" % section, page), "section '%s' has no heading" % section)
        for key in settings:
            self.assertIn("*%s*" % key, page.split("# SECTION defaults", 1)[1].split("# SECTION", 1)[0],
                          "'%s' is not named under defaults" % key)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit("usage: test_docs.py SOURCE_ROOT BUILD_DIR")
    SRC, BUILD = os.path.abspath(sys.argv[1]), os.path.abspath(sys.argv[2])
    unittest.main(argv=sys.argv[:1] + sys.argv[3:], verbosity=2)
