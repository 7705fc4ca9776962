/*
 * endpoint.c: parsing SRC/DST arguments (see endpoint.h).
 */
#include "engine/endpoint.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "image/nbd.h"

/* [user@]host:PATH, or 0 when arg is not remote. */
static int endpoint_parse_remote(const char *arg, struct endpoint *ep,
                                 struct df_error *err)
{
    const char *colon, *host = arg, *at;
    size_t hlen;
    /* user@ comes before the host; '@' after the colon is in the path */
    colon = strchr(arg, ':');
    const char *slash = strchr(arg, '/');
    const char *brk = strchr(arg, '[');
    if (!colon || (slash && slash < colon && (!brk || brk > slash)))
        return 0;
    at = strchr(arg, '@');
    if (at && (at > colon || (brk && at > brk)))
        at = NULL;
    if (at) {
        if (at == arg || (size_t)(at - arg) >= sizeof(ep->user))
            return df_usage(err, "%s: bad user name", arg);
        memcpy(ep->user, arg, (size_t)(at - arg));
        ep->user[at - arg] = '\0';
        ep->has_user = true;
        host = at + 1;
    }
    if (*host == '[') {
        const char *end = strchr(host, ']');
        if (!end || end[1] != ':')
            return df_usage(err, "%s: expected [IPv6-address]:PATH", arg);
        hlen = (size_t)(end - host - 1);
        host++;
        colon = end + 1;
    } else {
        colon = strchr(host, ':');
        if (!colon)
            return 0;
        if (slash && slash < colon)
            return 0;
        hlen = (size_t)(colon - host);
    }
    if (hlen == 0) {
        if (ep->has_user)
            return df_usage(err, "%s: empty host name", arg);
        return 0;               /* ":x" is a local name */
    }
    if (hlen >= sizeof(ep->host))
        return df_usage(err, "%s: host name too long", arg);
    memcpy(ep->host, host, hlen);
    ep->host[hlen] = '\0';
    if (ep->host[0] == '-')
        return df_usage(err, "%s: a host name cannot start with '-'", arg);
    if (strlen(colon + 1) >= sizeof(ep->rpath))
        return df_usage(err, "%s: path too long", arg);
    snprintf(ep->rpath, sizeof(ep->rpath), "%s", colon + 1);
    if (!ep->rpath[0])
        return df_usage(err, "%s: no path after the host name", arg);
    ep->path = ep->rpath;
    ep->kind = EP_REMOTE;
    return 1;
}

/* tar:ARCHIVE//MEMBER */
static int endpoint_parse_tar(const char *arg, struct endpoint *ep,
                              struct df_error *err)
{
    const char *a = arg + 4;
    const char *sep = strstr(a + (*a != '\0'), "//");
    if (!sep || sep == a || !sep[2])
        return df_usage(err, "%s: expected tar:ARCHIVE//MEMBER (ARCHIVE a "
                        "path or -)", arg);
    if ((size_t)(sep - a) >= sizeof(ep->archive) ||
        strlen(sep + 2) >= sizeof(ep->member))
        return df_usage(err, "%s: name too long", arg);
    memcpy(ep->archive, a, (size_t)(sep - a));
    ep->archive[sep - a] = '\0';
    snprintf(ep->member, sizeof(ep->member), "%s", sep + 2);
    ep->path = arg;
    ep->kind = EP_TAR;
    return 0;
}

/*
 * URI-like prefixes are never host names.  `word://...` (word as an RFC
 * 3986 scheme: a letter, then letters, digits, '+', '-', '.') is always
 * a scheme, and so is `word:` for the words reserved below or a word
 * with a '+' (never in a host name), whatever follows.  NBD URIs are
 * parsed before (EP_NBD), and tar: (EP_TAR); any other scheme is a
 * usage error, never an ssh attempt.  Returns -1 with err set, or 0
 * when arg is no such form.
 */
static int endpoint_check_scheme(const char *arg, struct df_error *err)
{
    size_t n = 0;
    if ((arg[0] | 0x20) < 'a' || (arg[0] | 0x20) > 'z')
        return 0;
    while (arg[n] && (strchr("+-.", arg[n]) || ((arg[n] | 0x20) >= 'a' &&
           (arg[n] | 0x20) <= 'z') || (arg[n] >= '0' && arg[n] <= '9')))
        n++;
    if (arg[n] != ':')
        return 0;
    if (n == 4 && !strncasecmp(arg, "file", 4))
        return df_usage(err, "%s: file: URIs are not supported: give the "
                        "path itself", arg);
    if (!strncmp(arg + n, "://", 3) || memchr(arg, '+', n))
        return df_usage(err, "%s: unknown scheme '%.*s' (a path on "
                        "another host is host:PATH)", arg, (int)n, arg);
    return 0;
}

int endpoint_parse(const char *arg, struct endpoint *ep,
                   struct df_error *err)
{
    memset(ep, 0, sizeof(*ep));
    if (!*arg)
        return df_usage(err, "empty path");
    if (!strncasecmp(arg, "tar:", 4))
        return endpoint_parse_tar(arg, ep, err);
    if (image_is_nbd_uri(arg)) {
        if (strlen(arg) >= PATH_MAX)
            return df_usage(err, "NBD URI too long");
        ep->path = arg;
        ep->kind = EP_NBD;
        return 0;
    }
    if (endpoint_check_scheme(arg, err) < 0)
        return -1;
    int r = endpoint_parse_remote(arg, ep, err);
    if (r != 0)
        return r < 0 ? -1 : 0;
    memset(ep, 0, sizeof(*ep));
    ep->path = arg;
    ep->kind = strcmp(arg, "-") ? EP_LOCAL : EP_STREAM;
    return 0;
}
