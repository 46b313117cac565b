/*
 * fuzz_categories: the text of DATA/categories.tsv (ruleset_parse,
 * node/domain/ruleset.h), with the default rules and holidays. A text the node
 * accepts must give a classifier where every code it lists can be found.
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "ruleset.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    fuzz_init(NULL, 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *text = fuzz_cstr(data, size);
    struct ruleset r;
    struct errbuf e;
    err_clear(&e);
    int rc = ruleset_parse(&r, NULL, NULL, text, &e);
    free(text);
    if (rc != 0) {
        /* Nothing to release after a refusal: LeakSanitizer checks that. */
        FUZZ_ASSERT(rc < 0 && r.categories == NULL);
        return 0;
    }
    FUZZ_ASSERT(r.category_count >= 1 && r.category_count <= RULES_CATEGORIES_MAX);
    for (uint32_t i = 0; i < r.category_count; i++) {
        const struct category *c = &r.categories[i];
        size_t n = strlen(c->code);
        FUZZ_ASSERT(n >= 1 && n < RULES_CATEGORY_CODE_BYTES);
        FUZZ_ASSERT(strspn(c->code, "0123456789.") == n);
        FUZZ_ASSERT(ruleset_category(&r, c->code) == c);
    }
    ruleset_fini(&r);
    return 0;
}
