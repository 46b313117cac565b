/*
 * fuzz_rules_conf: the text of DATA/rules.conf (ruleset_parse, node/domain/ruleset.h),
 * with the default holidays and categories. The operator writes the file,
 * but the node must refuse any text it does not understand, never crash.
 */
#include <stdlib.h>

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
    int rc = ruleset_parse(&r, text, NULL, NULL, &e);
    free(text);
    if (rc != 0) {
        /* A refused file leaves nothing to release (node_open in node/service/node.c
         * relies on it): LeakSanitizer checks that. */
        FUZZ_ASSERT(rc < 0 && r.categories == NULL);
        return 0;
    }
    /* The ranges ruleset.c promises for each key. */
    FUZZ_ASSERT(r.utc_offset_min >= -720 && r.utc_offset_min <= 840);
    FUZZ_ASSERT(r.term_working_days >= 1 && r.term_working_days <= 365);
    FUZZ_ASSERT(r.extension_max_months >= 0 && r.extension_max_months <= 24);
    FUZZ_ASSERT(r.forward_working_days >= 0 && r.forward_working_days <= 60);
    FUZZ_ASSERT(r.complaint_window_months >= 1 && r.complaint_window_months <= 120);
    FUZZ_ASSERT(r.reopen_working_days >= 1 && r.reopen_working_days <= 365);
    FUZZ_ASSERT(r.co_signers_max <= 100000000);
    FUZZ_ASSERT((r.anonymous_types & ~0x7eu) == 0);
    ruleset_fini(&r);
    return 0;
}
