"""Notifications to the applicant (issue 13, docs/notifications.md): a real
node, a real SMTP server (aiosmtpd) and a local webhook receiver. What
arrives is checked byte for byte and counted by idempotency key, across
kill -9 of the node and gateway outages."""

import datetime
import os
import random
import re
import shutil
import time
import unittest

from harness import Node, federation, wait_for
from notifyrx import Mail, Webhook, write_conf

CONTACTS = "aigerim@example.kz, +7 (701) 123-45-67"
KEY = b"test-webhook-hmac-key-0123456789"


# The catalogue's texts (po/kk.po, po/ru.po) as the applicant receives them.
ANSWERED = {
    "kk": "Сіздің {n} өтінішіңізге жауап берілді (ішінара қанағаттандырылды). Жауапты нөмір мен "
          "кіру коды арқылы оқыңыз.",
    "ru": "На ваше обращение {n} дан ответ (удовлетворено частично). Прочитайте ответ по номеру "
          "и коду доступа.",
    "en": "Your appeal {n} is answered (partly). Read the answer with your number and access "
          "code."}
FILED_START = {"kk": "Сіздің өтінішіңізді KZ-75 ", "ru": "Ваше обращение зарегистрировано KZ-75 ",
               "en": "Your appeal is registered by KZ-75 "}
SUBJECT = {"kk": "Сіздің өтінішіңіз {n}", "ru": "Ваше обращение {n}", "en": "Your appeal {n}"}


def plus_days(day, n):
    return (datetime.date.fromisoformat(day) + datetime.timedelta(days=n)).isoformat()


def metric(node, name):
    text = node.ctl_raw("metrics")[1]
    m = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


class Notify(unittest.TestCase):
    def setUp(self):
        self.mail = Mail()
        self.hook = Webhook(KEY)
        self.node = Node("KZ-75")
        self.conf = os.path.join(self.node.root, "notify.conf")

    def tearDown(self):
        self.node.cleanup()
        self.mail.stop()
        self.hook.stop()

    def start(self, **extra):
        write_conf(self.conf, self.mail, self.hook, os.path.join(self.node.root, "hook.key"),
                   **extra)
        self.node.start("--notify", self.conf)

    def file(self, lang="ru", contacts=CONTACTS):
        return self.node.ctl("file", "--type", "statement", "--category", "0002.0001",
                             "--subject", "Pension recalculation", "--applicant-name",
                             "Aigerim Bekova", "--applicant-iin", "900101300126",
                             "--applicant-contacts", contacts, "--appeal-lang", lang)

    def test_lifecycle_reaches_the_applicant_once_in_order(self):
        self.start()
        r = self.file("ru")
        number, deadline = r["number"], r["deadline"]
        self.assertRegex(r["access_code"], r"^[a-z2-7]{24}$")  # 120 bits, told once
        self.node.ctl("assign", number, "--to", "Department of social protection")
        until = plus_days(deadline, 10)
        self.node.ctl("extend", number, "--until", until, "--reason", "Экспертиза")
        self.node.ctl("answer", number, "--outcome", "partly", "--text", "See the letter")
        self.node.ctl("close", number)
        self.node.ctl("reopen", number, "--reason", "Not resolved")
        events = ["filed", "extended", "answered", "closed", "reopened"]
        wait_for(lambda: len(self.hook.posts()) >= 5 and len(self.mail.messages()) >= 5,
                 timeout=30, what="five notifications per channel")
        posts = self.hook.posts()
        self.assertEqual([p[2]["event"] for p in posts], events)  # once each, in order
        self.assertTrue(all(p[3] for p in posts), "every webhook call is signed with the key")
        self.assertEqual({p[2]["to"] for p in posts}, {"+77011234567"})
        self.assertEqual([p[2]["idempotency_key"] for p in posts],
                         [h["Idempotency-Key"] for h, _, _, _ in posts])
        first = posts[0][2]
        self.assertEqual(first["lang"], "ru")
        self.assertEqual(first["text"],
                         f"Ваше обращение зарегистрировано KZ-75 под номером {number}. "
                         f"Ответ будет дан не позднее {deadline}.")
        self.assertIn("Экспертиза", posts[1][2]["text"])  # extended: to DATE and why
        self.assertIn(until, posts[1][2]["text"])
        mails = self.mail.messages()
        self.assertEqual(len(mails), 5)
        self.assertEqual([m[0] for m in mails], [("aigerim@example.kz",)] * 5)
        self.assertEqual([m[2]["X-Appeal-Idempotency-Key"].split(".")[-3] for m in mails],
                         ["v0", "v2", "v3", "v4", "v5"])  # assign (v1) is not notified
        self.assertEqual(Mail.subject(mails[0][2]), f"Ваше обращение {number}")
        self.assertEqual(Mail.text(mails[0][2]), first["text"])
        self.assertTrue(mails[0][1].startswith(b"From: <registry@kz75.example>\r\n"))
        time.sleep(0.5)
        self.assertEqual(len(self.hook.posts()), 5, "nothing more arrives")
        self.assertEqual(metric(self.node, "appeal_notifications_queued"), 0)
        self.assertEqual(metric(self.node, "appeal_notifications_sent_total"), 10)
        # Officials see each notification and its delivery state (appealctl
        # show, appealctl notifications), never the applicant's address.
        shown = self.node.ctl("show", number)["notifications"]
        self.assertEqual([(n["event"], n["channel"], n["state"], n["attempts"]) for n in shown],
                         [(e, ch, "sent", 1) for e in events for ch in ("email", "sms")])
        self.assertEqual(sorted(n["idem_key"] for n in shown),
                         sorted([p[2]["idempotency_key"] for p in posts]
                                + [m[2]["X-Appeal-Idempotency-Key"] for m in mails]))
        listed = self.node.ctl("notifications")
        self.assertEqual((listed["notifications"], listed["more"]), (shown, False))
        self.assertEqual(self.node.ctl("notifications", "--failed")["notifications"], [])
        rc, out, err = self.node.ctl_raw("notifications", key="")
        self.assertNotEqual(rc, 0, "officials and admins only")
        self.assertRegex(out + err, r"may not do this|signed")
        self.assertIn("  notifications\n", self.node.ctl_raw("show", number)[1])
        text = self.node.ctl_raw("notifications")[1]
        self.assertEqual(len(text.splitlines()), 10)
        self.assertNotIn("aigerim@example.kz", text)
        self.assertNotIn("+77011234567", text)

    def test_language_of_the_appeal(self):
        """Each appeal's notifications in its language: the text, the outcome's
        name, the e-mail's subject and Content-Language, the webhook's lang."""
        self.start()
        numbers = {lang: self.file(lang)["number"] for lang in ("kk", "ru", "en")}
        for n in numbers.values():
            self.node.ctl("answer", n, "--outcome", "partly", "--text", "See the letter")
        wait_for(lambda: len(self.hook.posts()) >= 6 and len(self.mail.messages()) >= 6,
                 timeout=30, what="six notifications per channel")
        hooks = {(p[2]["number"], p[2]["event"]): p[2] for p in self.hook.posts()}
        mails = {(m[2]["X-Appeal-Idempotency-Key"].split(".")[0],
                  m[2]["X-Appeal-Idempotency-Key"].split(".")[1]): m[2]
                 for m in self.mail.messages()}
        for lang, n in numbers.items():
            with self.subTest(lang=lang):
                answered = hooks[(n, "answered")]
                self.assertEqual((hooks[(n, "filed")]["lang"], answered["lang"]), (lang, lang))
                self.assertEqual(answered["text"], ANSWERED[lang].format(n=n))
                self.assertTrue(hooks[(n, "filed")]["text"].startswith(FILED_START[lang]),
                                hooks[(n, "filed")]["text"])
                mail = mails[(n, "v1")]
                self.assertEqual(Mail.text(mail), answered["text"])
                self.assertEqual(Mail.subject(mail), SUBJECT[lang].format(n=n))
                self.assertEqual(mail["Content-Language"], lang)

    def test_no_contacts_no_notification(self):
        self.start()
        self.file("ru", contacts="call the office")
        n = self.file("ru")["number"]
        wait_for(lambda: self.hook.posts(), timeout=30, what="a notification")
        time.sleep(0.3)
        self.assertEqual([p[2]["number"] for p in self.hook.posts()], [n])

    def test_kill_and_outage_lose_and_duplicate_nothing(self):
        """Gateway down, then up; the node killed with SIGKILL at random
        moments while it delivers: every notification arrives, no key twice
        with different bytes, and each key counts once."""
        self.start(backoff_ms_min=50, backoff_ms_max=400)
        self.hook.down = True
        numbers = [self.file("ru")["number"] for _ in range(12)]
        wait_for(lambda: self.hook.refused >= 3, timeout=30, what="attempts while down")
        self.node.kill()  # kill -9 while the gateway is down
        self.node.start("--notify", self.conf)
        time.sleep(0.5)
        self.hook.down = False
        rnd = random.Random(13)
        for _ in range(3):  # kill -9 at random points during delivery
            for n in numbers[:4]:
                self.node.ctl("answer", n, "--outcome", "satisfied", "--text", "Done") \
                    if self.node.ctl("show", n)["status"] == "registered" else None
            time.sleep(rnd.uniform(0.0, 0.3))
            self.node.kill()
            self.node.start("--notify", self.conf)
        want = 2 * (len(numbers) + 4)  # filed for each, answered for four; two channels
        wait_for(lambda: len(self.hook.by_key()) + len(self.mail.by_key()) >= want, timeout=60,
                 what="every notification")
        time.sleep(0.5)
        for rx in (self.hook, self.mail):
            keys = rx.by_key()
            for k, seen in keys.items():
                raws = {s[1] for s in seen}
                self.assertEqual(len(raws), 1, f"{k}: a repeat differs from the first send")
        self.assertEqual(len(self.hook.by_key()), len(numbers) + 4)
        self.assertEqual(len(self.mail.by_key()), len(numbers) + 4)
        got = {(j["number"], j["event"]) for _, _, j, _ in self.hook.posts()}
        self.assertEqual(got, {(n, "filed") for n in numbers} |
                         {(n, "answered") for n in numbers[:4]})
        wait_for(lambda: metric(self.node, "appeal_notifications_queued") == 0, timeout=10,
                 what="an empty queue")

    def test_retry_limit_gives_up_with_an_alert(self):
        self.hook.down = True
        self.start(attempts_max=3, backoff_ms_min=20, backoff_ms_max=40)
        number = self.file("ru")["number"]
        wait_for(lambda: metric(self.node, "appeal_notifications_failed_total") == 1, timeout=30,
                 what="the webhook notification given up")
        self.assertEqual(self.hook.refused, 3)
        log = self.node.log()
        self.assertRegex(log, r"notification_failed .*number=" + number + r" .*channel=sms")
        wait_for(lambda: "notify_failing" in self.node.ctl_raw("metrics")[1], timeout=15,
                 what="the notify_failing alert")
        self.assertEqual(len(self.mail.messages()), 1, "the e-mail went out all the same")
        failed = self.node.ctl("notifications", "--failed")["notifications"]
        self.assertEqual([(n["number"], n["event"], n["channel"], n["state"], n["attempts"])
                          for n in failed], [(number, "filed", "sms", "failed", 3)])
        self.assertNotEqual(failed[0]["last_error"], "")
        self.assertEqual(len(self.node.ctl("notifications")["notifications"]), 2)

    def test_bad_config_refused_at_start(self):
        with open(self.conf, "w") as f:
            f.write("webhook_url = http://127.0.0.1:1/x\n")
        self.node.port = None
        with self.assertRaises(RuntimeError) as cm:
            self.node.start("--notify", self.conf)
        self.assertIn("webhook_url needs webhook_key_file", str(cm.exception))


class Forwarded(unittest.TestCase):
    """An appeal filed in Kazakh on KZ-75 and forwarded to KZ-71, whose
    default_lang is Russian: every notification, the receiver's too, is in
    Kazakh (the language of the appeal travels in AppealFiled.lang)."""

    def setUp(self):
        self.mail = Mail()
        self.hook = Webhook(KEY)
        self.fed = federation(["KZ-71", "KZ-75"], heartbeat_ms=500)
        rules = os.path.join(self.fed.members["KZ-71"].dir, "rules.conf")
        with open(rules) as f:
            text = f.read()
        self.assertIn("\ndefault_lang = kk\n", text)
        with open(rules, "w") as f:
            f.write(text.replace("\ndefault_lang = kk\n", "\ndefault_lang = ru\n"))
        for code, m in self.fed.members.items():
            conf = write_conf(os.path.join(self.fed.root, f"notify-{code}.conf"), self.mail,
                              self.hook, os.path.join(self.fed.root, f"hook-{code}.key"))
            m.start("--notify", conf)

    def tearDown(self):
        self.fed.kill_all()
        shutil.rmtree(self.fed.root, ignore_errors=True)
        self.mail.stop()
        self.hook.stop()

    def test_kazakh_appeal_notified_in_kazakh_by_a_russian_node(self):
        sender, receiver = self.fed.members["KZ-75"], self.fed.members["KZ-71"]
        n = sender.ctl("file", "--type", "statement", "--category", "0002.0001", "--subject",
                       "Pension recalculation", "--applicant-name", "Aigerim Bekova",
                       "--applicant-iin", "900101300126", "--applicant-contacts", CONTACTS,
                       "--appeal-lang", "kk")["number"]
        sender.ctl("forward", n, "--to", "KZ-71", "--reason", "Competence of Astana")
        wait_for(lambda: any(i["number"] == n for i in
                             receiver.ctl("list", "--incoming")["items"]), 30, what="forward")
        receiver.ctl("accept", n)
        receiver.ctl("answer", n, "--outcome", "satisfied", "--text", "Қайта есептелді")
        receiver.ctl("close", n)
        deadline = receiver.ctl("show", n)["deadline"]
        # The receiver's own default is Russian: an appeal filed there without
        # a language is notified in Russian.
        ru = receiver.ctl("file", "--type", "statement", "--category", "0002.0001",
                          "--subject", "Pension", "--applicant-name", "Aigerim Bekova",
                          "--applicant-iin", "900101300126", "--applicant-contacts",
                          CONTACTS)["number"]
        wait_for(lambda: len(self.hook.posts()) >= 6 and len(self.mail.messages()) >= 6,
                 timeout=30, what="six notifications per channel")
        time.sleep(0.3)
        posts = [p[2] for p in self.hook.posts()]
        self.assertEqual(len(posts), 6, "nothing more arrives")
        got = [(p["from"], p["event"], p["lang"], p["text"]) for p in posts if p["number"] == n]
        self.assertEqual(got, [
            ("KZ-75", "filed", "kk", got[0][3]),
            ("KZ-75", "forwarded", "kk",
             f"Сіздің {n} өтінішіңіз оны қарауға құзыретті KZ-71 органына жіберілді."),
            ("KZ-71", "accepted", "kk",
             f"Сіздің {n} өтінішіңізді қарауға қабылдады: KZ-71. Жауап {deadline} кешіктірілмей "
             "беріледі."),
            ("KZ-71", "answered", "kk",
             f"Сіздің {n} өтінішіңізге жауап берілді (қанағаттандырылды). Жауапты нөмір мен "
             "кіру коды арқылы оқыңыз."),
            ("KZ-71", "closed", "kk", f"Сіздің {n} өтінішіңізді қарау аяқталды.")])
        self.assertTrue(got[0][3].startswith("Сіздің өтінішіңізді KZ-75 "), got[0][3])
        mails = {m[2]["X-Appeal-Idempotency-Key"]: m for m in self.mail.messages()}
        by_receiver = [m for k, m in mails.items() if k.startswith(n + ".") and
                       m[2]["Message-ID"].endswith("@KZ-71.appeal>")]
        self.assertEqual(len(by_receiver), 3)
        for _, raw, msg in by_receiver:
            self.assertIn(b"\r\nContent-Language: kk\r\n", raw)
            self.assertEqual(Mail.subject(msg), f"Сіздің өтінішіңіз {n}")
            self.assertIn(Mail.text(msg), [g[3] for g in got[2:]])
        own = [p for p in posts if p["number"] == ru]
        self.assertEqual([(p["lang"], p["text"][:26]) for p in own],
                         [("ru", "Ваше обращение зарегистрир")])


if __name__ == "__main__":
    unittest.main()
