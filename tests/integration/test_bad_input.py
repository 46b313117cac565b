"""Bad input of every kind, sent as raw bytes to a real node: each gets a
clear error, nothing is stored, and the node keeps serving."""

import unittest

from harness import Node, field, file_request, request


class BadInput(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.node = Node("KZ-75").start()

    @classmethod
    def tearDownClass(cls):
        rc = cls.node.stop()
        cls.node.cleanup()
        assert rc == 0, f"node exited with {rc}"

    def expect(self, data, code, *fragments):
        before = self.node.info()
        answer = self.node.raw(data)
        self.assertIsNotNone(answer, "the node gave no answer")
        self.assertEqual(answer["code"], code, answer["message"])
        for f in fragments:
            self.assertIn(f, answer["message"])
        after = self.node.info()
        self.assertEqual(after["head_seq"], before["head_seq"], "bad input was stored")
        self.assertEqual(after["appeals"], before["appeals"])
        return answer["message"]

    def test_a_good_request_works(self):
        answer = self.node.raw(file_request())
        self.assertEqual(answer["code"], "none")

    def test_malformed_protobuf(self):
        self.expect(b"\xff\xff\xff\xff", "bad_request", "malformed")
        self.expect(b"", "bad_request")
        self.expect(field(1, b"\x0a\xff\x01"), "bad_request", "malformed")
        # Group wire types are refused outright.
        self.expect(b"\x0b\x0c", "bad_request", "wire type")

    def test_truncated_request(self):
        good = file_request()
        for cut in (1, 5, len(good) // 2, len(good) - 1):
            with self.subTest(cut=cut):
                self.expect(good[:cut], "bad_request")

    def test_oversized_message(self):
        big = file_request(body="x" * 200_000)
        self.expect(big, "too_large", "exceeds the limit")
        # Past the socket's receive limit nng drops the connection instead
        # of reading it: no answer, and the node serves the next client.
        self.assertIsNone(self.node.raw(file_request(body="y" * 2_000_000)))
        self.assertEqual(self.node.info()["jurisdiction"], "KZ-75")

    def test_unknown_type_and_operation(self):
        self.expect(file_request(type_=99), "bad_request", "unknown appeal type")
        self.expect(file_request(type_=0), "bad_request", "unknown appeal type")
        self.expect(request(99, b""), "bad_request", "no operation")
        self.expect(file_request(version=7), "bad_request", "version 7")

    def test_missing_and_overlong_fields(self):
        self.expect(file_request(subject=None), "bad_request", "subject is required")
        self.expect(file_request(subject=""), "bad_request", "subject is required")
        self.expect(file_request(category=""), "bad_request", "category is required")
        self.expect(file_request(subject="s" * 1001), "too_large", "subject", "1000")
        self.expect(file_request(body="b" * 40000), "too_large", "text")
        self.expect(file_request(name="n" * 301), "too_large", "name")

    def test_invalid_text(self):
        self.expect(file_request(subject=bytes([0x41, 0xff, 0x41])), "bad_request", "UTF-8")
        self.expect(file_request(subject="line\x01break"), "bad_request",
                    "the subject holds a control character")

    def test_deceptive_text_is_refused(self):
        # C1 controls, bidirectional overrides and isolates, and line breaks
        # in one-line fields display other than they read (issue 10, K).
        bidi = "bidirectional control character"
        self.expect(file_request(subject="Pension \u009b2J"), "bad_request",
                    "the subject holds a control character (C1)")
        self.expect(file_request(subject="Pension \u202egpj.exe"), "bad_request",
                    "the subject", bidi)
        self.expect(file_request(subject="Pension\r"), "bad_request", "the subject", "line break")
        self.expect(file_request(name="Aigerim\u2066Bekova"), "bad_request", "name", bidi)
        self.expect(file_request(category="0002.0001\u200f"), "bad_request", "category", bidi)
        self.expect(file_request(body="Text\u202d reversed"), "bad_request", "the text", bidi)
        self.expect(file_request(body="Text\u0085"), "bad_request", "the text", "(C1)")
        self.expect(file_request(body="a lone\rCR"), "bad_request", "the text",
                    "control character")
        number = self.node.file()["number"]
        assign, withdraw = 1, 5
        self.expect(request(13, field(1, number) + field(2, assign) +
                            field(3, "Serik\u202e \u009b")), "bad_request", "the assignee")
        self.expect(request(13, field(1, number) + field(2, withdraw) +
                            field(5, "by phone\rOK")), "bad_request", "the reason", "line break")
        self.expect(request(13, field(1, number) + field(2, withdraw) +
                            field(5, "by phone\nOK")), "bad_request", "the reason", "line break")
        # multi-line text keeps its line breaks (LF, CR LF, tab)
        answer = self.node.raw(file_request(body="Line one\r\nline two\n\tthree"))
        self.assertEqual(answer["code"], "none", answer["message"])

    def test_invalid_iin(self):
        msg = self.expect(file_request(iin="900101300127"), "bad_request", "IIN")
        self.assertNotIn("900101300127", msg)
        self.expect(file_request(iin="12345"), "bad_request", "12 digits")

    def test_invalid_transition_and_number(self):
        number = self.node.file()["number"]
        act = field(1, number) + field(2, 4)  # close a registered appeal
        self.expect(request(13, act), "invalid_transition", "cannot close")
        self.expect(request(13, field(1, "../../etc") + field(2, 4)), "bad_request",
                    "not a registration number")
        self.expect(request(13, field(1, number) + field(2, 42)), "bad_request",
                    "unknown action")
        self.expect(request(11, field(1, "KZ-75-2026-\x00")), "bad_request")

    def test_list_bounds(self):
        self.expect(request(12, field(3, 5000)), "bad_request", "limit")
        self.expect(request(12, field(4, "garbage")), "bad_request", "page token")
        self.expect(request(12, field(5, "nowhere")), "bad_request", "owner")


if __name__ == "__main__":
    unittest.main()
