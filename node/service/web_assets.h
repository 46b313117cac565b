/* web_assets.h: the dashboard's files, embedded at build time from
 * node/service/web/ (CMake generates web_assets.c). */
#ifndef APPEAL_WEB_ASSETS_H
#define APPEAL_WEB_ASSETS_H

#include <stddef.h>

struct web_asset {
    const char *path; /* "/", "/dashboard.js", ... */
    const char *mime;
    const unsigned char *data;
    size_t len;
};

extern const struct web_asset web_assets[];
extern const size_t web_assets_count;

#endif
