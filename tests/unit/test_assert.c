/* test_assert: a failing ASSERT (node/base/assert.h) logs one fatal line
 * naming the condition, file and line, and aborts the process; a holding
 * one does nothing. Run in a child (fork) whose stderr is a pipe. */
#include <signal.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "assert.h"
#include "check.h"
#include "olog.h"

enum { OUT_BYTES_MAX = 4096 };

/* Runs ASSERT(seq == head + 1) with the given values in a child; returns
 * its wait status and what it wrote to stderr in `out`. */
static int run_child(unsigned long seq, unsigned long head, char *out, size_t out_bytes,
                     int *line) {
    int p[2];
    if (pipe(p) != 0) {
        return -1;
    }
    *line = __LINE__ + 6; /* the ASSERT below */
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        dup2(p[1], 2);
        olog_init("KZ-75", "test", 2, OLOG_ERROR);
        ASSERT(seq == head + 1);
        _exit(0);
    }
    close(p[1]);
    size_t used = 0;
    ssize_t n;
    while (used + 1 < out_bytes && (n = read(p[0], out + used, out_bytes - 1 - used)) > 0) {
        used += (size_t)n;
    }
    out[used] = '\0';
    close(p[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    return status;
}

int main(void) {
    char out[OUT_BYTES_MAX], want[128];
    int line;

    int status = run_child(5, 3, out, sizeof out, &line);
    CHECK(WIFSIGNALED(status));
    CHECK_INT(WIFSIGNALED(status) ? WTERMSIG(status) : 0, SIGABRT);
    CHECK_CONTAINS(out, "level=fatal juris=KZ-75 node=test event=assert_failed");
    CHECK_CONTAINS(out, "cond=\"seq == head + 1\"");
    CHECK_CONTAINS(out, "file=");
    CHECK_CONTAINS(out, "test_assert.c");
    snprintf(want, sizeof want, "line=%d\n", line);
    CHECK_CONTAINS(out, want);

    /* An invariant that holds: the child runs on and exits 0, silently. */
    status = run_child(4, 3, out, sizeof out, &line);
    CHECK(WIFEXITED(status));
    CHECK_INT(WIFEXITED(status) ? WEXITSTATUS(status) : -1, 0);
    CHECK_STR(out, "");

    /* In release builds too: nothing here depends on NDEBUG. */
    CHECK_DONE();
}
