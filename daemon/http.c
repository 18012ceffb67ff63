/* SPDX-License-Identifier: MIT */
/*
 * The HTTP client: one curl multi handle (one connection pool) driven by
 * sd-event. curl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION)
 * and when to wake it up (CURLMOPT_TIMERFUNCTION); we keep the sockets in
 * an epoll set of our own, watched by one io source and drained in batches,
 * arm one monotonic timer, and feed events back through
 * curl_multi_socket_action(). Finished transfers are collected with
 * curl_multi_info_read() after every socket_action call.
 *
 * A request goes to curl as it is submitted; how many are in flight at
 * once is the caller's to bound (the Zuora client admits at most
 * max_concurrent_requests, first come, first sent), and the pool of
 * connections is bounded here (max_connections: curl holds a transfer
 * beyond it until a connection is free). A callback never comes from inside
 * http_submit() or http_cancel(): only from the loop.
 *
 * A request is one small allocation: the URL, the header lines and the
 * body, on a curl easy handle (several KB, plus curl's buffers) taken from
 * a pool and reused with curl_easy_reset() and a fresh set of options, so
 * there are never more handles than requests in flight at the busiest.
 *
 * Done callbacks run from our info-read loop after the easy handle has left
 * the multi handle, so they are outside every curl callback: they may call
 * http_submit() and http_cancel() (of any request, even a running one) and
 * sd_event_exit(), and even http_free(): then the other requests are
 * cancelled at once and the Http object goes when the callback has
 * returned, since the loop that called it still holds it.
 */
#include <assert.h>
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "list.h"
#include "macro.h"

/* Keeps the system's CAs trusted when a ca_file is added: curl replaces
 * its default bundle with CURLOPT_CAINFO, but also reads this hashed
 * directory. */
#define HTTP_SYSTEM_CA_PATH "/etc/ssl/certs"
/* Zuora's answers are a few hundred bytes: the first body buffer is small,
 * and a pooled handle keeps its buffer for the next answer unless one grew
 * it past HTTP_BODY_KEEP_SIZE. */
#define HTTP_BODY_INITIAL_SIZE ((size_t) 4096)
#define HTTP_BODY_KEEP_SIZE ((size_t) 16384)
/* curl's receive buffer, per running transfer (curl's default is 16 KiB).
 * A whole answer fits; a larger body only takes more reads. */
#define HTTP_RECEIVE_BUFFER_SIZE 8192L
#define HTTP_NEVER UINT64_MAX

typedef enum HttpRequestState {
        HTTP_REQUEST_RUNNING,  /* on an easy handle, in the multi handle */
        HTTP_REQUEST_FINISHED, /* out of curl; its done callback is running */
        _HTTP_REQUEST_STATE_MAX,
        _HTTP_REQUEST_STATE_INVALID = -EINVAL,
} HttpRequestState;

typedef enum HttpHeader {
        HTTP_HEADER_LOCATION,
        HTTP_HEADER_RETRY_AFTER,
        HTTP_HEADER_RATELIMIT_RESET,
        HTTP_HEADER_CONTENT_TYPE,
        HTTP_HEADER_DATE,
        _HTTP_HEADER_MAX,
        _HTTP_HEADER_INVALID = -EINVAL,
} HttpHeader;

static const char *const http_header_names[_HTTP_HEADER_MAX] = {
        [HTTP_HEADER_LOCATION] = "Location",
        [HTTP_HEADER_RETRY_AFTER] = "Retry-After",
        [HTTP_HEADER_RATELIMIT_RESET] = "RateLimit-Reset",
        [HTTP_HEADER_CONTENT_TYPE] = "Content-Type",
        [HTTP_HEADER_DATE] = "Date",
};

/* One socket curl asked us to watch; curl_multi_assign() hands it back. */
/* A curl easy handle and what the transfer on it collects. */
typedef struct HttpEasy HttpEasy;
struct HttpEasy {
        Http *http;
        CURL *curl;
        HttpEasy *next_idle; /* in http->idle */

        char error_buffer[CURL_ERROR_SIZE];
        char *body; /* allocated size never exceeds max_body + 1 */
        size_t body_size, body_allocated;
        bool body_too_large;
        bool out_of_memory;
        unsigned sends; /* POST: times curl was about to send it */
        char *headers[_HTTP_HEADER_MAX];
};

/* One allocation: this struct, the header list nodes, then the strings the
 * nodes, url and body point to. curl reads CURLOPT_HTTPHEADER as a plain
 * linked list and never frees it, so the list need not come from
 * curl_slist_append(). The block is zeroed on free: the Authorization
 * header and the token request's form body are secrets. */
struct HttpRequest {
        Http *http;
        HttpRequestState state;
        LIST_FIELDS(HttpRequest, running); /* in http->running while RUNNING */

        HttpDoneFunc done;
        void *userdata;

        HttpMethod method;
        HttpEasy *easy; /* from the pool while it runs and completes */
        const char *url;
        const char *body; /* POST only, NUL-terminated after body_size bytes */
        size_t body_size;
        size_t n_headers;
        size_t size; /* of the whole block */
        struct curl_slist header_nodes[];
};

struct Http {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer; /* curl's single timeout */
        sd_event_source *defer; /* kicks curl when it asked for a timeout of 0 */
        uint64_t timer_armed;   /* CLOCK_MONOTONIC µs h->timer fires at, or HTTP_NEVER: off */
        bool kick;              /* curl asked for a timeout of 0: the defer source calls it */

        char *user_agent;
        char *ca_file;
        uint64_t timeout_usec;
        size_t max_body;
        unsigned max_connections;

        LIST_HEAD(HttpRequest) running;
        HttpEasy *idle;                /* pooled easy handles, most recently used first */
        unsigned n_easy;               /* easy handles in existence, idle or not */
        int epoll_fd;                  /* curl's sockets, watched as one source */
        sd_event_source *epoll_source; /* readable when any of them is ready */
        bool in_callback;
        bool freed; /* http_free() ran inside a done callback */
};

const char *http_method_to_string(HttpMethod m) {
        switch (m) {
        case HTTP_METHOD_GET:
                return "GET";
        case HTTP_METHOD_POST:
                return "POST";
        case HTTP_METHOD_DELETE:
                return "DELETE";
        case _HTTP_METHOD_MAX:
        case _HTTP_METHOD_INVALID:
                break;
        }
        return NULL;
}

/* ---- easy handles ---- */

static void http_easy_reset_headers(HttpEasy *x) {
        for (size_t i = 0; i < _HTTP_HEADER_MAX; i++)
                x->headers[i] = mfree(x->headers[i]);
}

static HttpEasy *http_easy_free(HttpEasy *x) {
        if (!x)
                return NULL;
        if (x->curl)
                curl_easy_cleanup(x->curl);
        http_easy_reset_headers(x);
        free(x->body);
        x->http->n_easy--;
        free(x);
        return NULL;
}

/* An idle handle from the pool, or a new one. Each running request holds
 * one, and gives it back when it is freed. */
static int http_easy_get(Http *h, HttpEasy **ret) {
        HttpEasy *x = h->idle;

        if (x) {
                h->idle = x->next_idle;
                x->next_idle = NULL;
                /* Back to curl's defaults: nothing of the last request (its
                 * method, body, headers, prereq callback) may carry over.
                 * Connections stay in the multi handle's pool. */
                curl_easy_reset(x->curl);
                *ret = x;
                return 0;
        }

        x = calloc(1, sizeof(HttpEasy));
        if (!x)
                return -ENOMEM;
        x->http = h;
        h->n_easy++;
        x->curl = curl_easy_init();
        if (!x->curl) {
                http_easy_free(x);
                return -ENOMEM;
        }
        *ret = x;
        return 0;
}

/* Back into the pool, with what the last transfer collected dropped. */
static void http_easy_put(Http *h, HttpEasy *x) {
        x->error_buffer[0] = 0;
        http_easy_reset_headers(x);
        /* The token answer carries a bearer token: a kept buffer must not
         * hold it until the next answer happens to overwrite it. */
        if (x->body)
                explicit_bzero(x->body, x->body_size + 1);
        if (x->body_allocated > HTTP_BODY_KEEP_SIZE) {
                x->body = mfree(x->body);
                x->body_allocated = 0;
        }
        x->body_size = 0;
        x->body_too_large = false;
        x->out_of_memory = false;
        x->sends = 0;
        x->next_idle = h->idle;
        h->idle = x;
}

/* ---- requests ---- */

/* Takes the request out of curl and out of its list; no callback. Its
 * easy handle stays attached until the request is freed. */
static void http_request_detach(HttpRequest *req) {
        Http *h = req->http;

        switch (req->state) {
        case HTTP_REQUEST_RUNNING:
                /* May call our socket callback with CURL_POLL_REMOVE, and drops
                 * a DONE message of this handle that curl_multi_info_read()
                 * has not returned yet. */
                (void) curl_multi_remove_handle(h->multi, req->easy->curl);
                LIST_REMOVE(running, &h->running, req);
                break;
        case HTTP_REQUEST_FINISHED:
        case _HTTP_REQUEST_STATE_MAX:
        case _HTTP_REQUEST_STATE_INVALID:
                break;
        }
        req->state = HTTP_REQUEST_FINISHED;
}

static HttpRequest *http_request_free(HttpRequest *req) {
        if (!req)
                return NULL;
        http_request_detach(req);
        if (req->easy)
                http_easy_put(req->http, req->easy);
        explicit_bzero(req, req->size);
        free(req);
        return NULL;
}

static HttpHeader http_header_from_name(const char *name, size_t len) {
        for (size_t i = 0; i < _HTTP_HEADER_MAX; i++)
                if (strlen(http_header_names[i]) == len && strncasecmp(http_header_names[i], name, len) == 0)
                        return (HttpHeader) i;
        return _HTTP_HEADER_INVALID;
}

static bool is_blank(char c) {
        return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* CURLOPT_HEADERFUNCTION: one complete header line per call, CRLF included. */
static size_t http_on_header(char *line, size_t size, size_t n, void *userdata) {
        HttpEasy *x = userdata;
        size_t len = size * n;

        /* Every response curl reads starts with a status line: an interim
         * 1xx, a proxy's CONNECT answer, then the real one. Only the last
         * block describes the answer we report. */
        if (len >= 5 && strncasecmp(line, "HTTP/", 5) == 0) {
                http_easy_reset_headers(x);
                return len;
        }

        const char *colon = memchr(line, ':', len);
        if (!colon)
                return len;
        HttpHeader hdr = http_header_from_name(line, (size_t) (colon - line));
        if (hdr < 0 || x->headers[hdr]) /* the first one of a block wins */
                return len;

        const char *v = colon + 1, *end = line + len;
        while (v < end && is_blank(*v))
                v++;
        while (end > v && is_blank(end[-1]))
                end--;
        x->headers[hdr] = strndup(v, (size_t) (end - v));
        if (!x->headers[hdr]) {
                x->out_of_memory = true;
                return 0; /* fails the transfer with CURLE_WRITE_ERROR */
        }
        return len;
}

static int http_easy_grow_body(HttpEasy *x, size_t need) {
        size_t max = x->http->max_body;
        size_t cap = max < SIZE_MAX ? max + 1 : SIZE_MAX; /* room for the NUL */
        size_t n = x->body_allocated > 0 ? x->body_allocated : HTTP_BODY_INITIAL_SIZE;

        while (n < need)
                n = n > SIZE_MAX / 2 ? SIZE_MAX : n * 2;
        if (n > cap)
                n = cap;

        char *p = realloc(x->body, n);
        if (!p)
                return -ENOMEM;
        x->body = p;
        x->body_allocated = n;
        return 0;
}

/* CURLOPT_WRITEFUNCTION: the decoded body, piece by piece. Returning less
 * than given makes curl fail the transfer with CURLE_WRITE_ERROR. */
static size_t http_on_write(char *data, size_t size, size_t n, void *userdata) {
        HttpEasy *x = userdata;
        size_t len = size * n;

        if (len > x->http->max_body - x->body_size) {
                x->body_too_large = true;
                return 0;
        }
        size_t need = x->body_size + len + 1;
        if (need > x->body_allocated && http_easy_grow_body(x, need) < 0) {
                x->out_of_memory = true;
                return 0;
        }
        memcpy(x->body + x->body_size, data, len);
        x->body_size += len;
        x->body[x->body_size] = 0;
        return len;
}

/* Called by curl each time it is about to send the request: once, unless
 * it wants to resend it on a new connection by itself. */
static int http_on_prereq(
        void *userdata,
        char *conn_primary_ip,
        char *conn_local_ip,
        int conn_primary_port,
        int conn_local_port) {
        HttpEasy *x = userdata;

        return x->sends++ == 0 ? CURL_PREREQFUNC_OK : CURL_PREREQFUNC_ABORT;
}

static int http_request_setup_method(HttpRequest *req) {
        CURL *e = req->easy->curl;

        switch (req->method) {
        case HTTP_METHOD_GET:
                if (curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK)
                        return -EIO;
                return 0;
        case HTTP_METHOD_POST:
                /* A POST goes on a warm connection when there is one: the
                 * checks' connection, still open, saves a TCP and a TLS
                 * handshake after them. Should that connection turn out dead
                 * with no answer, curl would send the POST again on its own,
                 * and Zuora may have acted on the first: that resend is
                 * refused, and the caller decides (after its list check). */
                if (curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, http_on_prereq) != CURLE_OK ||
                    curl_easy_setopt(e, CURLOPT_PREREQDATA, req->easy) != CURLE_OK)
                        return -EIO;
                /* The size must come first, or curl uses strlen() (the body
                 * may hold NULs). The body is ours and outlives the transfer,
                 * so curl need not copy it. */
                if (curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) req->body_size) !=
                            CURLE_OK ||
                    curl_easy_setopt(e, CURLOPT_POSTFIELDS, req->body) != CURLE_OK)
                        return -EIO;
                return 0;
        case HTTP_METHOD_DELETE:
                if (curl_easy_setopt(e, CURLOPT_HTTPGET, 1L) != CURLE_OK ||
                    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, "DELETE") != CURLE_OK)
                        return -EIO;
                return 0;
        case _HTTP_METHOD_MAX:
        case _HTTP_METHOD_INVALID:
                break;
        }
        return -EINVAL;
}

static int http_request_setup_tls(HttpRequest *req) {
        Http *h = req->http;
        CURL *e = req->easy->curl;

        if (curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 1L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 2L) != CURLE_OK)
                return -EIO;
        if (!h->ca_file)
                return 0;
        if (curl_easy_setopt(e, CURLOPT_CAINFO, h->ca_file) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_CAPATH, HTTP_SYSTEM_CA_PATH) != CURLE_OK)
                return -EIO;
        return 0;
}

static int http_request_setup_transfer(HttpRequest *req) {
        Http *h = req->http;
        HttpEasy *x = req->easy;
        CURL *e = x->curl;

        if (curl_easy_setopt(e, CURLOPT_URL, req->url) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_PRIVATE, req) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->error_buffer) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "gzip") != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_BUFFERSIZE, HTTP_RECEIVE_BUFFER_SIZE) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, http_on_write) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_WRITEDATA, x) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, http_on_header) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_HEADERDATA, x) != CURLE_OK)
                return -EIO;
        if (h->user_agent && curl_easy_setopt(e, CURLOPT_USERAGENT, h->user_agent) != CURLE_OK)
                return -EIO;
        if (req->n_headers > 0 && curl_easy_setopt(e, CURLOPT_HTTPHEADER, &req->header_nodes[0]) != CURLE_OK)
                return -EIO;

        /* curl's timeouts start when the handle joins the multi handle, so
         * time spent in the caller's queue does not count (a wait in curl for
         * a free connection does). 0 means none, as in curl. */
        long ms = (long) ((h->timeout_usec + USEC_PER_MSEC - 1) / USEC_PER_MSEC);
        if (curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, ms) != CURLE_OK ||
            curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, ms) != CURLE_OK)
                return -EIO;
        return 0;
}

/* Sets every option of REQ on its (fresh or reset) easy handle. */
static int http_request_setup(HttpRequest *req) {
        int r;

        r = http_request_setup_transfer(req);
        if (r < 0)
                return r;
        r = http_request_setup_tls(req);
        if (r < 0)
                return r;
        return http_request_setup_method(req);
}

/* Writes A (A_LEN bytes), B (a string, may be NULL) and a NUL at *P;
 * returns where it starts and advances *P past the NUL. */
static char *http_block_put(char **p, const char *a, size_t a_len, const char *b) {
        char *start = *p, *q = mempcpy(start, a, a_len);

        if (b)
                q = stpcpy(q, b);
        else
                *q = 0;
        *p = q + 1;
        return start;
}

/* Adds A + B to *SIZE; false on overflow. */
static bool size_add(size_t *size, size_t a, size_t b) {
        if (a > SIZE_MAX - b || *size > SIZE_MAX - (a + b))
                return false;
        *size += a + b;
        return true;
}

#define HTTP_CONTENT_TYPE_PREFIX "Content-Type: "
/* curl sends "Expect: 100-continue" before large bodies and waits for the
 * server's go-ahead; an empty value removes the header, so the body follows
 * the request head directly. */
#define HTTP_NO_EXPECT "Expect:"

/* Copies what the request needs out of SPEC into one block. */
static int http_request_new(Http *h, const HttpRequestSpec *spec, HttpRequest **ret) {
        size_t n_headers = 0, size = 0;
        bool post = spec->method == HTTP_METHOD_POST;

        for (const char *const *hdr = spec->headers; hdr && *hdr; hdr++) {
                n_headers++;
                if (!size_add(&size, strlen(*hdr), 1))
                        return -E2BIG;
        }
        if (spec->content_type) {
                n_headers++;
                if (!size_add(&size, strlen(HTTP_CONTENT_TYPE_PREFIX), strlen(spec->content_type) + 1))
                        return -E2BIG;
        }
        if (post) {
                n_headers++;
                size += sizeof(HTTP_NO_EXPECT);
        }
        if (!size_add(&size, strlen(spec->url), 1) || (post && !size_add(&size, spec->body_size, 1)))
                return -E2BIG;
        if (n_headers > (SIZE_MAX - sizeof(HttpRequest)) / sizeof(struct curl_slist) ||
            !size_add(&size, sizeof(HttpRequest), n_headers * sizeof(struct curl_slist)))
                return -E2BIG;

        HttpRequest *req = malloc(size);
        if (!req)
                return -ENOMEM;
        *req = (HttpRequest) {
                .http = h,
                .state = HTTP_REQUEST_FINISHED, /* in no list yet */
                .method = spec->method,
                .n_headers = n_headers,
                .size = size,
        };

        char *p = (char *) (req->header_nodes + n_headers);
        size_t i = 0;
        for (const char *const *hdr = spec->headers; hdr && *hdr; hdr++)
                req->header_nodes[i++].data = http_block_put(&p, *hdr, strlen(*hdr), NULL);
        if (spec->content_type)
                req->header_nodes[i++].data = http_block_put(
                        &p, HTTP_CONTENT_TYPE_PREFIX, strlen(HTTP_CONTENT_TYPE_PREFIX), spec->content_type);
        if (post)
                req->header_nodes[i++].data =
                        http_block_put(&p, HTTP_NO_EXPECT, strlen(HTTP_NO_EXPECT), NULL);
        for (i = 0; i < n_headers; i++)
                req->header_nodes[i].next = i + 1 < n_headers ? &req->header_nodes[i + 1] : NULL;

        req->url = http_block_put(&p, spec->url, strlen(spec->url), NULL);
        if (post) {
                /* The body may hold NULs; the NUL after it is only a guard. */
                req->body = http_block_put(&p, spec->body_size > 0 ? spec->body : "", spec->body_size, NULL);
                req->body_size = spec->body_size;
        }
        assert(p == (char *) req + size);

        *ret = req;
        return 0;
}

/* ---- completion ---- */

static int http_error_from_curl(const HttpEasy *x, CURLcode code) {
        if (x->sends > 1)
                return -ECONNRESET; /* the connection broke, the resend was refused */
        switch (code) {
        case CURLE_OK:
                return 0;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
                return -ECONNRESET;
        case CURLE_WRITE_ERROR:
                return x->body_too_large ? -EMSGSIZE : -EIO;
        case CURLE_OUT_OF_MEMORY:
                /* curl's own refusal of a header line over its limit
                 * (CURL_MAX_HTTP_HEADER, 100 KiB) comes as this: an answer
                 * too large, unless it was really our memory. */
                return x->out_of_memory ? -ENOMEM : -EMSGSIZE;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_SSL_ENGINE_NOTFOUND:
        case CURLE_SSL_ENGINE_SETFAILED:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_ENGINE_INITFAILED:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_SHUTDOWN_FAILED:
        case CURLE_SSL_CRL_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CLIENTCERT:
        case CURLE_USE_SSL_FAILED:
        case CURLE_UNSUPPORTED_PROTOCOL:
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_BAD_CONTENT_ENCODING: /* gzip that does not inflate */
                return -EPROTO;
        default:
                return -EIO;
        }
}

/* Whether request bytes may have reached the server. curl stamps
 * PRETRANSFER (at least 1 µs, never 0 once set) when the connection,
 * TLS and any proxy tunnel included, is ready and it starts sending the
 * request; a refused connection, a failed name lookup and a failed TLS
 * handshake all end before it. REQUEST_SIZE counts request bytes written.
 * Either one set means the server may have acted on the request: a
 * timeout or reset while waiting for the answer. Erring towards "maybe"
 * is the safe side, because a caller will not blindly repeat a POST then.
 * curl_easy_reset() clears both, so a pooled handle does not report its
 * previous transfer. */
static bool http_easy_maybe_sent(HttpEasy *x) {
        curl_off_t pretransfer = 0;
        long request_size = 0;

        if (x->sends > 0)
                return true;
        (void) curl_easy_getinfo(x->curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer);
        (void) curl_easy_getinfo(x->curl, CURLINFO_REQUEST_SIZE, &request_size);
        return pretransfer > 0 || request_size > 0;
}

static const char *http_easy_error_text(HttpEasy *x, CURLcode code, int error) {
        if (error == -EMSGSIZE && !x->body_too_large)
                return "A response header line larger than curl takes (100 KiB)";
        if (error == -EMSGSIZE) {
                (void) snprintf(
                        x->error_buffer,
                        sizeof(x->error_buffer),
                        "Response body larger than %zu bytes",
                        x->http->max_body);
                return x->error_buffer;
        }
        if (x->out_of_memory)
                return "Out of memory while receiving the response";
        if (x->sends > 1)
                return "The connection closed before an answer came (the request was not sent again)";
        /* The buffer says more than the code, e.g. "SSL certificate problem:
         * self-signed certificate" for CURLE_PEER_FAILED_VERIFICATION. */
        if (code != CURLE_OK && x->error_buffer[0])
                return x->error_buffer;
        return curl_easy_strerror(code);
}

static void http_destroy(Http *h);

/* Calls back with RESP and frees the request (its easy handle goes back to
 * the pool only now: RESP points into it). Returns true if the callback
 * freed the Http object: the caller must return without touching it. */
static bool http_request_finish(HttpRequest *req, const HttpResponse *resp) {
        Http *h = req->http;

        h->in_callback = true;
        if (req->done)
                req->done(req, resp, req->userdata);
        h->in_callback = false;

        http_request_free(req);
        if (!h->freed)
                return false;
        http_destroy(h);
        return true;
}

/* Called with the request already out of curl: builds the response from
 * what its easy handle collected and what curl still knows, and calls
 * back. Returns true if the callback freed the Http object. */
static bool http_request_complete(HttpRequest *req, CURLcode code) {
        HttpEasy *x = req->easy;
        curl_off_t total = 0;
        long status = 0;
        int error = http_error_from_curl(x, code);

        (void) curl_easy_getinfo(x->curl, CURLINFO_RESPONSE_CODE, &status);
        (void) curl_easy_getinfo(x->curl, CURLINFO_TOTAL_TIME_T, &total);

        HttpResponse resp = {
                .error = error,
                .maybe_sent = error == 0 || http_easy_maybe_sent(x),
                .error_text = http_easy_error_text(x, code, error),
                .status = status,
                .body = x->body ? x->body : "",
                .body_size = x->body_size,
                .location = x->headers[HTTP_HEADER_LOCATION],
                .retry_after = x->headers[HTTP_HEADER_RETRY_AFTER],
                .ratelimit_reset = x->headers[HTTP_HEADER_RATELIMIT_RESET],
                .content_type = x->headers[HTTP_HEADER_CONTENT_TYPE],
                .date = x->headers[HTTP_HEADER_DATE],
                .elapsed_usec = total > 0 ? (uint64_t) total : 0,
        };
        return http_request_finish(req, &resp);
}

/* Drains curl's finished transfers. Each message is copied out and its
 * handle removed before the callback runs: the callback may cancel other
 * requests, which makes curl drop their pending messages, or submit new
 * ones, so we ask curl again for every message instead of walking a list.
 * Returns true if a callback freed the Http object. */
static bool http_on_finished(Http *h) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(h->multi, &left))) {
                if (msg->msg != CURLMSG_DONE)
                        continue;

                CURL *easy = msg->easy_handle;
                CURLcode code = msg->data.result;
                char *p = NULL;

                if (curl_easy_getinfo(easy, CURLINFO_PRIVATE, &p) != CURLE_OK || !p) {
                        (void) curl_multi_remove_handle(h->multi, easy);
                        continue;
                }
                HttpRequest *req = (HttpRequest *) p;
                http_request_detach(req); /* invalidates msg */
                if (http_request_complete(req, code))
                        return true;
        }
        return false;
}

/* ---- the event loop side ---- */

/* Sockets handled per dispatch: sd-event dispatches one source per turn of
 * the loop, so with a source per socket a thousand connections ready at
 * once cost a thousand turns, each an epoll_wait() that walks every ready
 * socket again (a same-second burst spent most of its time there). Our own
 * epoll set is one source, and each dispatch takes a batch. */
#define HTTP_EPOLL_BATCH 256

static int http_on_epoll(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Http *h = userdata;
        struct epoll_event ev[HTTP_EPOLL_BATCH];
        int n, running;

        n = epoll_wait(h->epoll_fd, ev, HTTP_EPOLL_BATCH, 0);
        for (int i = 0; i < n; i++) {
                int action = 0;
                if (ev[i].events & EPOLLIN)
                        action |= CURL_CSELECT_IN;
                if (ev[i].events & EPOLLOUT)
                        action |= CURL_CSELECT_OUT;
                if (ev[i].events & (EPOLLERR | EPOLLHUP))
                        action |= CURL_CSELECT_ERR;
                /* Errors here are curl's internal ones (bad handle, no
                 * memory); the affected transfers still end through their own
                 * timeouts. A socket curl closed earlier in this batch is
                 * unknown to it and ignored. */
                (void) curl_multi_socket_action(h->multi, ev[i].data.fd, action, &running);
        }
        /* More ready than a batch: the set stays readable, and the loop comes
         * back after its other sources had their turn. */
        (void) http_on_finished(h);
        return 0;
}

static void http_timer_arm(Http *h, uint64_t when) {
        /* Fails only on a loop that is gone, which no longer dispatches. */
        if (sd_event_source_set_time(h->timer, when) < 0 ||
            sd_event_source_set_enabled(h->timer, SD_EVENT_ONESHOT) < 0)
                return;
        h->timer_armed = when;
}

static uint64_t now_monotonic(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
}

/* Sets our timer for curl's next deadline, TIMEOUT_MS from now (-1: none):
 * 0 goes to the defer source; a later deadline than the one armed leaves
 * the timer as it is. */
static int http_timer_follow(Http *h, long timeout_ms) {
        h->kick = false;
        if (timeout_ms < 0)
                return 0;
        if (timeout_ms == 0) {
                h->kick = true;
                return sd_event_source_set_enabled(h->defer, SD_EVENT_ONESHOT);
        }
        /* The real clock rather than sd_event_now(): the latter is the start
         * of this loop iteration. */
        uint64_t when = now_monotonic() + (uint64_t) timeout_ms * USEC_PER_MSEC;
        if (when < h->timer_armed)
                http_timer_arm(h, when);
        return 0;
}

/* Tells curl that its timeout (or an earlier one of ours) has come. curl
 * calls CURLMOPT_TIMERFUNCTION only when its next deadline changes, so
 * after an early expiry, or a deadline not quite due by curl's clock, it
 * stays silent: we ask it instead (a lookup, no system call). */
static bool http_curl_timeout(Http *h) {
        long timeout_ms;
        int running;

        (void) curl_multi_socket_action(h->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        if (!h->kick && curl_multi_timeout(h->multi, &timeout_ms) == CURLM_OK)
                (void) http_timer_follow(h, timeout_ms);
        return http_on_finished(h);
}

static int http_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Http *h = userdata;

        h->timer_armed = HTTP_NEVER; /* a ONESHOT source is off once it fired */
        (void) http_curl_timeout(h);
        return 0;
}

static uint32_t http_poll_to_epoll(int what) {
        switch (what) {
        case CURL_POLL_IN:
                return EPOLLIN;
        case CURL_POLL_OUT:
                return EPOLLOUT;
        case CURL_POLL_INOUT:
                return EPOLLIN | EPOLLOUT;
        default:
                return 0;
        }
}

/* CURLMOPT_SOCKETFUNCTION: curl tells us what to wait for on a socket. A
 * socket in our epoll set carries H as curl's per-socket pointer; a new
 * one has none. */
static int http_on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userdata, void *socketp) {
        Http *h = userdata;
        struct epoll_event ev = { .data.fd = fd };

        if (what == CURL_POLL_REMOVE) {
                /* curl forgets the assignment itself; it calls this before it
                 * closes the socket, so the fd is still ours to unregister. */
                (void) epoll_ctl(h->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
                return 0;
        }
        ev.events = http_poll_to_epoll(what);
        if (socketp)
                return epoll_ctl(h->epoll_fd, EPOLL_CTL_MOD, fd, &ev) < 0 ? -1 : 0;
        if (epoll_ctl(h->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
                return -1;
        if (curl_multi_assign(h->multi, fd, h) != CURLM_OK) {
                (void) epoll_ctl(h->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
                return -1;
        }
        return 0;
}

/* CURLMOPT_TIMERFUNCTION: curl's next deadline, which replaces the one
 * before; -1 means none. curl's documentation is explicit that this must
 * not call curl_multi_socket_action() (nor anything else of curl): it only
 * records the deadline, and our timer or defer source calls curl later.
 *
 * curl moves its deadline at nearly every step of every transfer (0 when
 * a handle is added, then the earliest timeout of those running). Each
 * move of the timer costs a timerfd_settime() in the next sd_event_prepare(),
 * and each expiry a read() of the timerfd, so: 0 goes to the defer source,
 * which needs neither; a later deadline than the one armed leaves the timer
 * as it is (it fires early, curl finds nothing due, and http_curl_timeout()
 * asks curl and arms it again); only an earlier one moves it. */
static int http_on_curl_timer(CURLM *multi, long timeout_ms, void *userdata) {
        Http *h = userdata;

        return http_timer_follow(h, timeout_ms) < 0 ? -1 : 0;
}

/* Gives REQ an easy handle from the pool and hands it to curl. On failure
 * the request has no handle and is in no list. */
static int http_request_start(HttpRequest *req) {
        Http *h = req->http;
        int r;

        r = http_easy_get(h, &req->easy);
        if (r < 0)
                return r;
        r = http_request_setup(req);
        if (r < 0)
                return r;
        if (curl_multi_add_handle(h->multi, req->easy->curl) != CURLM_OK)
                return -EIO;
        req->state = HTTP_REQUEST_RUNNING;
        LIST_APPEND(running, &h->running, req);
        return 0;
}

/* The defer source: calls curl when it asked for a timeout of 0 (as
 * adding a handle does), so a request leaves in the loop turn it was
 * submitted in. */
static int http_on_defer(sd_event_source *s, void *userdata) {
        Http *h = userdata;

        if (h->kick) {
                h->kick = false;
                (void) http_curl_timeout(h);
        }
        return 0;
}

/* ---- public ---- */

static int http_setup_multi(Http *h) {
        h->multi = curl_multi_init();
        if (!h->multi)
                return -ENOMEM;
        if (curl_multi_setopt(h->multi, CURLMOPT_SOCKETFUNCTION, http_on_curl_socket) != CURLM_OK ||
            curl_multi_setopt(h->multi, CURLMOPT_SOCKETDATA, h) != CURLM_OK ||
            curl_multi_setopt(h->multi, CURLMOPT_TIMERFUNCTION, http_on_curl_timer) != CURLM_OK ||
            curl_multi_setopt(h->multi, CURLMOPT_TIMERDATA, h) != CURLM_OK)
                return -EIO;
        /* The pool: idle keep-alive connections make way for new ones, and a
         * transfer beyond it waits in curl for a connection. */
        long max = (long) h->max_connections;
        if (curl_multi_setopt(h->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, max) != CURLM_OK)
                return -EIO;
        /* The cache of idle connections would otherwise grow to four times
         * the handles ever added; each entry holds buffers and TLS state. */
        if (curl_multi_setopt(h->multi, CURLMOPT_MAXCONNECTS, max) != CURLM_OK)
                return -EIO;
        return 0;
}

static int http_setup_sources(Http *h) {
        int r;

        h->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
        if (h->epoll_fd < 0)
                return -errno;
        r = sd_event_add_io(h->event, &h->epoll_source, h->epoll_fd, EPOLLIN, http_on_epoll, h);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(h->epoll_source, "curl-sockets");
        /* Network I/O goes before slot timers and state writes: a burst of
         * slots must not hold back the requests already under way. */
        (void) sd_event_source_set_priority(h->epoll_source, SD_EVENT_PRIORITY_IMPORTANT);

        /* Accuracy 1 µs: 0 would let sd-event coalesce within 250 ms. */
        r = sd_event_add_time(h->event, &h->timer, CLOCK_MONOTONIC, 0, /* accuracy= */ 1, http_on_timer, h);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(h->timer, "curl-timer");
        (void) sd_event_source_set_priority(h->timer, SD_EVENT_PRIORITY_IMPORTANT);
        r = sd_event_source_set_enabled(h->timer, SD_EVENT_OFF);
        if (r < 0)
                return r;

        r = sd_event_add_defer(h->event, &h->defer, http_on_defer, h);
        if (r < 0)
                return r;
        (void) sd_event_source_set_description(h->defer, "curl-kick");
        (void) sd_event_source_set_priority(h->defer, SD_EVENT_PRIORITY_IMPORTANT);
        return sd_event_source_set_enabled(h->defer, SD_EVENT_OFF);
}

static int http_global_init(void) {
        /* curl_global_init() is not thread-safe before 7.84 and must run
         * once; refreshd is single-threaded, so a flag is enough. */
        static bool done = false;

        if (done)
                return 0;
        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        done = true;
        return 0;
}

DEFINE_TRIVIAL_CLEANUP_FUNC(Http *, http_free);

int http_new(sd_event *event, const HttpOptions *options, Http **ret) {
        _cleanup_(http_freep) Http *h = NULL;
        int r;

        if (!event || !options || !ret || options->max_connections == 0)
                return -EINVAL;
        r = http_global_init();
        if (r < 0)
                return r;

        h = calloc(1, sizeof(Http));
        if (!h)
                return -ENOMEM;
        h->event = sd_event_ref(event);
        h->timeout_usec = options->timeout_usec;
        h->max_body = options->max_body;
        h->max_connections = options->max_connections;
        h->timer_armed = HTTP_NEVER;
        h->epoll_fd = -1;
        if (options->user_agent && !(h->user_agent = strdup(options->user_agent)))
                return -ENOMEM;
        if (options->ca_file && !(h->ca_file = strdup(options->ca_file)))
                return -ENOMEM;

        r = http_setup_multi(h);
        if (r < 0)
                return r;
        r = http_setup_sources(h);
        if (r < 0)
                return r;

        *ret = TAKE_PTR(h);
        return 0;
}

static void http_cancel_all(Http *h) {
        while (h->running.head)
                http_request_free(h->running.head);
}

static void http_destroy(Http *h) {
        http_cancel_all(h);
        /* Closes the pooled connections; curl may still call our socket and
         * timer callbacks from here, so the sources go after it. */
        if (h->multi)
                curl_multi_cleanup(h->multi);
        sd_event_source_disable_unref(h->epoll_source);
        if (h->epoll_fd >= 0)
                close(h->epoll_fd);
        while (h->idle) {
                HttpEasy *x = h->idle;
                h->idle = x->next_idle;
                http_easy_free(x);
        }

        sd_event_source_disable_unref(h->timer);
        sd_event_source_disable_unref(h->defer);
        sd_event_unref(h->event);
        free(h->user_agent);
        free(h->ca_file);
        free(h);
}

Http *http_free(Http *h) {
        if (!h)
                return NULL;
        if (h->in_callback) {
                /* The loop that runs the callback still uses h: nothing else
                 * may call back, and h itself goes when the callback returns. */
                http_cancel_all(h);
                h->freed = true;
                return NULL;
        }
        http_destroy(h);
        return NULL;
}

int http_submit(Http *h, const HttpRequestSpec *spec, HttpDoneFunc done, void *userdata, HttpRequest **ret) {
        HttpRequest *req = NULL;
        int r;

        if (!h || !spec || !spec->url || !http_method_to_string(spec->method))
                return -EINVAL;
        if (h->freed)
                return -ESTALE;
        if (spec->body_size > 0 && (!spec->body || spec->method != HTTP_METHOD_POST))
                return -EINVAL;

        r = http_request_new(h, spec, &req);
        if (r < 0)
                return r;
        req->done = done;
        req->userdata = userdata;
        r = http_request_start(req);
        if (r < 0) {
                http_request_free(req);
                return r;
        }
        if (ret)
                *ret = req;
        return 0;
}

void http_cancel(HttpRequest *req) {
        /* Cancelling the request whose callback is running changes nothing:
         * it is freed when the callback returns. */
        if (req && req->state != HTTP_REQUEST_FINISHED)
                http_request_free(req);
}

size_t http_pending(const Http *h) {
        return h ? h->running.n : 0;
}
