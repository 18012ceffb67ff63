/* SPDX-License-Identifier: MIT */
/*
 * HTTP client on the event loop: curl's multi interface driven by sd-event
 * through CURLMOPT_SOCKETFUNCTION/CURLMOPT_TIMERFUNCTION (no threads, no
 * polling, no sleeps). One bounded connection pool for every request. Knows nothing
 * about Zuora. Never follows redirects; TLS verification is always on;
 * response bodies are capped; only http and https.
 */
#pragma once

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct Http Http;
typedef struct HttpRequest HttpRequest;

typedef enum HttpMethod {
        HTTP_METHOD_GET,
        HTTP_METHOD_POST,
        HTTP_METHOD_DELETE,
        _HTTP_METHOD_MAX,
        _HTTP_METHOD_INVALID = -EINVAL,
} HttpMethod;

typedef struct HttpOptions {
        const char *user_agent;   /* "refreshd/0.1.0" */
        const char *ca_file;      /* NULL: the system's CAs only; else added to them */
        uint64_t timeout_usec;    /* whole request, connect included */
        size_t max_body;          /* larger answers fail with -EMSGSIZE */
        unsigned max_connections; /* the pool; a request beyond it waits for a free connection */
} HttpOptions;

typedef struct HttpRequestSpec {
        HttpMethod method;
        const char *url;
        const char *const *headers; /* "Name: value", NULL-terminated; may be NULL */
        const void *body;           /* POST only; copied */
        size_t body_size;
        const char *content_type; /* e.g. "application/json"; NULL: none */
} HttpRequestSpec;

typedef struct HttpResponse {
        /* 0, or why no complete answer came: -ECONNREFUSED, -ETIMEDOUT,
         * -ECONNRESET, -EHOSTUNREACH (name or address), -EMSGSIZE (body over
         * max_body), -EPROTO (not HTTP, bad TLS), -ECANCELED, -EIO (other). */
        int error;
        /* Only with an error: the request may have reached the server (the
         * outcome of a POST is unknown). False when it failed before any
         * byte was sent (refused, unresolved, TLS handshake). */
        bool maybe_sent;
        const char *error_text; /* curl's words, for logs; never NULL */
        long status;            /* HTTP status; 0 without an answer */
        const char *body;       /* NUL-terminated (may hold NULs); never NULL */
        size_t body_size;
        const char *location; /* response headers of interest, or NULL */
        const char *retry_after;
        const char *ratelimit_reset;
        const char *content_type;
        const char *date; /* when the server made the answer, by its clock */
        uint64_t elapsed_usec;
} HttpResponse;

/* Called once per request that was not cancelled, from the event loop. The
 * response and the request are freed when it returns. */
typedef void (*HttpDoneFunc)(HttpRequest *req, const HttpResponse *resp, void *userdata);

int http_new(sd_event *event, const HttpOptions *options, Http **ret);

/* Cancels every request still in flight (no callbacks) and frees. */
Http *http_free(Http *h);

/* Starts a request; the caller bounds how many are in flight. The spec and
 * its strings are copied. A request that cannot be started is an error here,
 * never a callback.
 * *ret (may be NULL) stays valid until DONE runs or http_cancel(). */
int http_submit(Http *h, const HttpRequestSpec *spec, HttpDoneFunc done, void *userdata, HttpRequest **ret);

/* Aborts a request; its callback is not called. */
void http_cancel(HttpRequest *req);

/* Requests in flight. */
size_t http_pending(const Http *h);

const char *http_method_to_string(HttpMethod m);
