/* access.c: the applicant's access code (access.h). */
#include "access.h"

#include <sodium.h>
#include <string.h>

static const char b32[] = "abcdefghijklmnopqrstuvwxyz234567";

static void digest(const char *code, const uint8_t salt[ACCESS_SALT_BYTES], uint8_t out[32]) {
    crypto_generichash(out, 32, (const unsigned char *)code, ACCESS_CODE_CHARS, salt,
                       ACCESS_SALT_BYTES);
}

void access_code_new(char code[ACCESS_CODE_CHARS + 1], uint8_t hash[ACCESS_HASH_BYTES]) {
    uint8_t raw[ACCESS_CODE_BYTES];
    randombytes_buf(raw, sizeof raw);
    /* 15 bytes are exactly 24 groups of 5 bits. */
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (size_t i = 0; i < sizeof raw; i++) {
        acc = (acc << 8) | raw[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            code[n++] = b32[(acc >> bits) & 31u];
        }
    }
    code[n] = '\0';
    sodium_memzero(raw, sizeof raw);
    randombytes_buf(hash, ACCESS_SALT_BYTES);
    digest(code, hash, hash + ACCESS_SALT_BYTES);
}

/* The code in canonical form: lower case, no spaces or dashes. */
static bool canonical(const char *in, char out[ACCESS_CODE_CHARS + 1]) {
    size_t n = 0;
    for (size_t i = 0; in[i] != '\0'; i++) {
        if (i >= ACCESS_INPUT_CHARS_MAX) {
            return false;
        }
        char ch = in[i];
        if (ch == '-' || ch == ' ') {
            continue;
        }
        if (ch >= 'A' && ch <= 'Z') {
            ch = (char)(ch - 'A' + 'a');
        }
        if (strchr(b32, ch) == NULL || ch == '\0' || n >= ACCESS_CODE_CHARS) {
            return false;
        }
        out[n++] = ch;
    }
    out[n] = '\0';
    return n == ACCESS_CODE_CHARS;
}

bool access_code_check(const char *input, const uint8_t *hash, size_t hash_len) {
    char code[ACCESS_CODE_CHARS + 1];
    if (input == NULL || hash == NULL || hash_len != ACCESS_HASH_BYTES || !canonical(input, code)) {
        return false;
    }
    uint8_t d[32];
    digest(code, hash, d);
    bool ok = sodium_memcmp(d, hash + ACCESS_SALT_BYTES, sizeof d) == 0;
    sodium_memzero(code, sizeof code);
    return ok;
}
