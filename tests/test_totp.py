"""lib/clawgate/totp.py against the RFCs: HOTP/TOTP vectors, the ±1 step window, constant-time
compare, otpauth URIs, and the 160-bit floor on seeds (also through `enroll --import`)."""

import hmac
import secrets
import time

import pytest

import installtree  # noqa: F401  (puts lib/ on sys.path)
from clawgate import totp

RFC4226_SECRET = b"12345678901234567890"
# RFC 4226 Appendix D: HOTP values for counters 0..9.
RFC4226_HOTP = ["755224", "287082", "359152", "969429", "338314",
                "254676", "287922", "162583", "399871", "520489"]

# RFC 6238 Appendix B: the seed for each algorithm is the ASCII digits repeated to the hash size.
RFC6238_SEEDS = {
    "SHA1": b"12345678901234567890",                                               # 20 bytes
    "SHA256": b"12345678901234567890123456789012",                                 # 32 bytes
    "SHA512": b"1234567890123456789012345678901234567890123456789012345678901234",  # 64 bytes
}
RFC6238_TOTP = [  # (time, T as the RFC prints it, SHA1, SHA256, SHA512), 8 digits
    (59, 0x1, "94287082", "46119246", "90693936"),
    (1111111109, 0x23523EC, "07081804", "68084774", "25091201"),
    (1111111111, 0x23523ED, "14050471", "67062674", "99943326"),
    (1234567890, 0x273EF07, "89005924", "91819424", "93441116"),
    (2000000000, 0x3F940AA, "69279037", "90698825", "38618901"),
    (20000000000, 0x27BC86AA, "65353130", "77737706", "47863826"),
]
RFC6238_CASES = [(when, step, algorithm, codes[i])
                 for when, step, *codes in RFC6238_TOTP
                 for i, algorithm in enumerate(("SHA1", "SHA256", "SHA512"))]


def test_seed_lengths_are_the_rfc_ones():
    assert [len(RFC6238_SEEDS[a]) for a in ("SHA1", "SHA256", "SHA512")] == [20, 32, 64]


@pytest.mark.parametrize("counter, expected", list(enumerate(RFC4226_HOTP)))
def test_rfc4226_appendix_d(counter, expected):
    assert totp.hotp(RFC4226_SECRET, counter) == expected


@pytest.mark.parametrize("when, step, algorithm, expected", RFC6238_CASES)
def test_rfc6238_appendix_b_8_digits(when, step, algorithm, expected):
    params = totp.Params(RFC6238_SEEDS[algorithm], algorithm, digits=8)
    assert totp.step_at(when) == step
    assert totp.code_at(params, when) == expected


@pytest.mark.parametrize("when, step, algorithm, expected", RFC6238_CASES)
def test_rfc6238_appendix_b_6_digits(when, step, algorithm, expected):
    # Truncation is `binary % 10**digits`, so the 6-digit code is the 8-digit one's last six.
    params = totp.Params(RFC6238_SEEDS[algorithm], algorithm, digits=6)
    assert totp.code_at(params, when) == expected[-6:]


@pytest.mark.parametrize("when, step, algorithm, expected", RFC6238_CASES)
def test_rfc6238_vectors_are_accepted_by_match_step(when, step, algorithm, expected):
    params = totp.Params(RFC6238_SEEDS[algorithm], algorithm, digits=8)
    assert totp.match_step(params, expected, when, after_step=-1) == step


# -- the ±1 step window and replay ordering ---------------------------------------------------
NOW = 1_800_000_015.0  # mid-step
PARAMS = totp.Params(RFC6238_SEEDS["SHA1"])


@pytest.mark.parametrize("offset, accepted", [(-90, False), (-60, False), (-30, True), (0, True),
                                              (30, True), (60, False), (90, False)])
def test_window_is_one_step_either_side(offset, accepted):
    code = totp.code_at(PARAMS, NOW + offset)
    found = totp.match_step(PARAMS, code, NOW, after_step=-1)
    assert found == (totp.step_at(NOW + offset) if accepted else None)


def test_window_edges_follow_step_boundaries_not_seconds():
    start = totp.step_at(NOW) * 30  # first second of the current step
    previous = totp.code_at(PARAMS, start - 1)
    assert totp.match_step(PARAMS, previous, start, -1) == totp.step_at(start) - 1
    assert totp.match_step(PARAMS, previous, start + 30, -1) is None


def test_a_step_at_or_before_the_last_accepted_one_is_refused():
    step = totp.step_at(NOW)
    code = totp.code_at(PARAMS, NOW)
    assert totp.match_step(PARAMS, code, NOW, after_step=step - 1) == step
    assert totp.match_step(PARAMS, code, NOW, after_step=step) is None
    assert totp.match_step(PARAMS, totp.code_at(PARAMS, NOW - 30), NOW, after_step=step) is None


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12345a", " 123456", "123456 ", "+12345",
                                  "\u0661\u0662\u0663\u0664\u0665\u0666", "１２３４５６", "12\x0034"])
def test_malformed_codes_never_match(code):
    assert totp.match_step(PARAMS, code, NOW, -1) is None


def test_a_six_digit_code_does_not_open_an_eight_digit_seed():
    eight = PARAMS._replace(digits=8)
    assert totp.match_step(eight, totp.code_at(eight, NOW)[-6:], NOW, -1) is None


# -- constant-time compare -----------------------------------------------------------------------
def _spy_on_compare_digest(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(totp.hmac, "compare_digest", spy)
    return calls


@pytest.mark.parametrize("which", ["wrong", "previous", "current", "next"])
def test_every_window_candidate_goes_through_compare_digest(monkeypatch, which):
    calls = _spy_on_compare_digest(monkeypatch)
    code = {"wrong": "000000" if totp.code_at(PARAMS, NOW) != "000000" else "000001",
            "previous": totp.code_at(PARAMS, NOW - 30), "current": totp.code_at(PARAMS, NOW),
            "next": totp.code_at(PARAMS, NOW + 30)}[which]
    result = totp.match_step(PARAMS, code, NOW, -1)
    assert (result is None) == (which == "wrong")
    # All three steps are compared even when the first one matches: no early exit.
    assert len(calls) == 3
    assert all(got == code.encode() for _, got in calls)


# -- otpauth URIs --------------------------------------------------------------------------------
@pytest.mark.parametrize("algorithm, digits", [("SHA1", 6), ("SHA256", 8), ("SHA512", 6)])
def test_otpauth_uri_round_trip(algorithm, digits):
    params = totp.Params(totp.new_secret(), algorithm, digits)
    text = totp.uri(params, "alice@host name")
    assert text.startswith("otpauth://totp/clawgate%3Aalice%40host%20name?")
    assert "issuer=clawgate" in text
    assert totp.parse_uri(text) == params


def test_otpauth_uri_defaults_and_lenient_secret():
    secret = totp.new_secret()
    b32 = totp.to_base32(secret).lower()
    assert totp.parse_uri(f"  otpauth://totp/x?secret={b32}  ") == totp.Params(secret)


@pytest.mark.parametrize("text, reason", [
    ("https://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "not an otpauth"),
    ("otpauth://hotp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", "not an otpauth"),
    ("otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&algorithm=MD5", "algorithm"),
    ("otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&digits=7", "digits"),
    ("otpauth://totp/x?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&period=60", "period"),
    ("otpauth://totp/x", "base32"),
    ("otpauth://totp/x?secret=not!base32", "base32"),
    ("otpauth://totp/x?secret=A", "base32"),
])
def test_otpauth_uri_parse_errors(text, reason):
    with pytest.raises(ValueError) as err:
        totp.parse_uri(text)
    assert reason.lower() in str(err.value).lower()


def test_base32_accepts_what_authenticators_show():
    secret = bytes(range(20))
    shown = totp.to_base32(secret)
    spaced = " ".join(shown[i:i + 4] for i in range(0, len(shown), 4)).lower()
    assert totp.from_base32(spaced) == secret
    assert totp.from_base32("-".join(shown[i:i + 4] for i in range(0, len(shown), 4))) == secret
    assert totp.from_base32(shown + "====") == secret


# -- seed strength -------------------------------------------------------------------------------
def test_new_seeds_are_160_bits_and_fresh():
    seeds = {totp.new_secret() for _ in range(50)}
    assert len(seeds) == 50 and {len(s) for s in seeds} == {20}


@pytest.mark.parametrize("size, ok", [(10, False), (16, False), (19, False), (20, True), (32, True), (64, True)])
def test_seed_below_160_bits_is_refused(size, ok):
    params = totp.Params(bytes(size))
    if ok:
        totp.check_strength(params)
    else:
        with pytest.raises(ValueError, match="at least 160"):
            totp.check_strength(params)


@pytest.mark.parametrize("form", ["base32", "uri"])
def test_enroll_import_refuses_a_short_seed_and_saves_nothing(bare_tree, form):
    short = totp.Params(bytes(range(16)))  # 128 bits, as some services hand out
    text = totp.to_base32(short.secret) if form == "base32" else totp.uri(short, "alice")
    code = totp.code_at(short, time.time())
    result = bare_tree.run("enroll", "--import", input=f"{text}\n{code}\n".encode())
    assert result.returncode == 2, result.stderr
    assert b"at least 160" in result.stderr
    assert not (bare_tree.state / "totp-seed").exists()


@pytest.mark.parametrize("algorithm, digits", [("SHA256", 8), ("SHA512", 6)])
def test_enroll_import_keeps_algorithm_and_digits_from_the_uri(bare_tree, algorithm, digits):
    params = totp.Params(secrets.token_bytes(32), algorithm, digits)
    t = bare_tree
    text = totp.uri(params, "alice")
    code = totp.code_at(params, time.time())
    result = t.run("enroll", "--import", input=f"{text}\n{code}\n".encode())
    assert result.returncode == 0, result.stderr
    from clawgate import seed
    assert seed.load(t.config()) == params
