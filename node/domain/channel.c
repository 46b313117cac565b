#include "channel.h"

#include <sodium.h>

void channel_key_hash(const char *api_key, size_t len, uint8_t out[KEY_PK_BYTES]) {
    static const char domain[] = "appeal-channel-key-v1";
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, KEY_PK_BYTES);
    crypto_generichash_update(&st, (const uint8_t *)domain, sizeof domain - 1);
    crypto_generichash_update(&st, (const uint8_t *)api_key, len);
    crypto_generichash_final(&st, out, KEY_PK_BYTES);
}
