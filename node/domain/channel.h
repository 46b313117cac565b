/*
 * channel.h: a citizens' portal's key (role `channel`, docs/open311.md).
 *
 * A channel authenticates with an API key, a secret text. What stands for
 * it in grants and as the actor of its records is never the key itself but
 * its hash: BLAKE2b-256("appeal-channel-key-v1" || key text), 32 bytes, in
 * the place of a public key. `appealctl channel add` makes a key of
 * CHANNEL_API_KEY_BYTES random bytes (hex); the node (Open311) accepts keys
 * up to CHANNEL_API_KEY_BYTES_MAX bytes of text. A grant without a rate
 * allows CHANNEL_RATE_PER_MIN_DEFAULT filings per minute.
 */
#ifndef APPEAL_CHANNEL_H
#define APPEAL_CHANNEL_H

#include <stddef.h>
#include <stdint.h>

#include "keys.h"

enum {
    CHANNEL_API_KEY_BYTES = 32,         /* random bytes of a key; 64 hex digits */
    CHANNEL_API_KEY_BYTES_MAX = 128,    /* text of a key the node accepts */
    CHANNEL_RATE_PER_MIN_DEFAULT = 600, /* filings per channel per minute */
};
_Static_assert(2 * CHANNEL_API_KEY_BYTES <= CHANNEL_API_KEY_BYTES_MAX,
               "a key appealctl makes must be one the node accepts");

/* The hash that stands for a channel's API key in grants and as the actor
 * of its records. */
void channel_key_hash(const char *api_key, size_t len, uint8_t out[KEY_PK_BYTES]);

#endif
