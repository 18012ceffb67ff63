/* SPDX-License-Identifier: MIT */
/*
 * The Zuora client. Calls that need a token while none is valid wait in a
 * list; one token request serves them all, so the rate-limited token
 * endpoint sees one request however many environments fire at once. A 401
 * drops the token and sends the call once more with a new one.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "client.h"
#include "httpdate.h"
#include "list.h"
#include "macro.h"

/* Zuora's samples renew a token 5 minutes before it expires. */
#define TOKEN_RENEW_USEC (5 * 60 * USEC_PER_SEC)

struct ClientCall {
        Client *client;
        LIST_FIELDS(ClientCall, calls); /* in client->calls */
        HttpMethod method;
        char *url;
        char *body;
        char *idempotency_key;
        ClientDoneFunc done;
        void *userdata;
        HttpRequest *request;
        LIST_FIELDS(ClientCall, queue); /* in client->queue, while QUEUED */
        bool waiting_token;
        bool queued;
        bool reauthenticated;
        int64_t sent_usec; /* CLOCK_REALTIME: when its request left */
        char track_id[ZUORA_TRACK_ID_MAX];
};

/* A queue at least this long is given back to the system once drained. */
#define CLIENT_TRIM_AFTER_QUEUE 256

struct Client {
        sd_event *event;
        Http *http;
        const Config *config;
        char *origin; /* of base_url, as url_origin() gives it; NULL: none is ours */
        Secret *secret;
        char *token;
        uint64_t token_expires; /* CLOCK_BOOTTIME µs */
        HttpRequest *token_request;
        LIST_HEAD(ClientCall) calls;
        /* Calls wait here, in order, while max_concurrent_requests are in
         * flight: a waiting call holds no request yet (no headers, no
         * copies), which at 1,000 polls due together is about 0.4 MB. */
        LIST_HEAD(ClientCall) queue;
        size_t queue_high;       /* the longest it has been since it was last empty */
        unsigned sending;        /* calls with a request in flight */
        sd_event_source *drain;  /* defer: sends waiting calls while there is room */
        int64_t token_sent_usec; /* CLOCK_REALTIME: when the token request left */
        ZuoraClock own_clock;
        ZuoraClock *clock; /* own_clock, or the state's */
};

static uint64_t now_boottime(Client *cl) {
        uint64_t t;

        if (sd_event_now(cl->event, CLOCK_BOOTTIME, &t) < 0) {
                struct timespec ts;
                clock_gettime(CLOCK_BOOTTIME, &ts);
                t = (uint64_t) ts.tv_sec * USEC_PER_SEC + (uint64_t) ts.tv_nsec / 1000;
        }
        return t;
}

static int64_t realtime_usec(void) {
        struct timespec ts;

        (void) clock_gettime(CLOCK_REALTIME, &ts);
        return (int64_t) ts.tv_sec * (int64_t) USEC_PER_SEC + ts.tv_nsec / 1000;
}

void client_set_clock(Client *cl, ZuoraClock *c) {
        cl->clock = c ?: &cl->own_clock;
}

const ZuoraClock *client_clock(const Client *cl) {
        return cl->clock;
}

void client_observe_clock(Client *cl, int64_t stamp_sec, int64_t sent_usec, int64_t received_usec) {
        (void) zclock_observe(cl->clock, stamp_sec, sent_usec, received_usec);
}

/* An answer's Date says what Zuora's clock showed between SENT and now. */
static void client_observe_date(
        Client *cl, const HttpResponse *resp, int64_t sent_usec, int64_t received_usec) {
        int64_t t;

        if (resp->status > 0 && resp->date && sent_usec > 0 &&
            httpdate_parse(resp->date, strlen(resp->date), received_usec / (int64_t) USEC_PER_SEC, &t) >= 0)
                client_observe_clock(cl, t, sent_usec, received_usec);
}

static void token_drop(Client *cl) {
        cl->token = secret_string_free(cl->token);
        cl->token_expires = 0;
}

/* A request of a call ended or was cancelled: there is room for another. */
static void call_request_gone(ClientCall *call) {
        Client *cl = call->client;

        call->request = NULL;
        cl->sending--;
        if (cl->queue.head)
                (void) sd_event_source_set_enabled(cl->drain, SD_EVENT_ONESHOT);
}

static ClientCall *call_free(ClientCall *call) {
        if (!call)
                return NULL;
        if (call->request) {
                http_cancel(call->request);
                call_request_gone(call);
        }
        if (call->queued)
                LIST_REMOVE(queue, &call->client->queue, call);
        LIST_REMOVE(calls, &call->client->calls, call);
        free(call->url);
        free(call->body);
        free(call->idempotency_key);
        free(call);
        return NULL;
}

static int url_origin(const char *url, char **ret);
static int client_on_drain(sd_event_source *s, void *userdata);

/* base_url is parsed once per config, not for every call. */
static void client_set_config(Client *cl, const Config *c) {
        cl->config = c;
        cl->origin = mfree(cl->origin);
        (void) url_origin(c->base_url, &cl->origin);
}

static HttpOptions http_options(const Config *c) {
        return (HttpOptions) {
                .user_agent = "refreshd/" PROJECT_VERSION,
                .ca_file = c->ca_file,
                .timeout_usec = c->request_timeout,
                .max_body = 1024 * 1024,
                .max_connections = c->max_concurrent_requests,
        };
}

int client_new(sd_event *event, const Config *c, Secret *secret, Client **ret) {
        Client *cl;
        HttpOptions o = http_options(c);
        int r;

        cl = calloc(1, sizeof(Client));
        if (!cl) {
                secret_free(secret);
                return -ENOMEM;
        }
        cl->event = sd_event_ref(event);
        cl->clock = &cl->own_clock;
        client_set_config(cl, c);
        cl->secret = secret;
        r = http_new(event, &o, &cl->http);
        if (r >= 0)
                r = sd_event_add_defer(event, &cl->drain, client_on_drain, cl);
        if (r < 0) {
                client_free(cl);
                return r;
        }
        (void) sd_event_source_set_description(cl->drain, "client-queue");
        (void) sd_event_source_set_enabled(cl->drain, SD_EVENT_OFF);
        *ret = cl;
        return 0;
}

Client *client_free(Client *cl) {
        if (!cl)
                return NULL;
        while (cl->calls.head)
                call_free(cl->calls.head);
        sd_event_source_disable_unref(cl->drain);
        if (cl->token_request)
                http_cancel(cl->token_request);
        http_free(cl->http);
        token_drop(cl);
        secret_free(cl->secret);
        sd_event_unref(cl->event);
        free(cl->origin);
        free(cl);
        return NULL;
}

int client_reconfigure(Client *cl, const Config *c, Secret *secret) {
        /* A request already in flight finishes with the old settings; the
         * connection pool is kept, since base_url may well be unchanged. */
        client_set_config(cl, c);
        secret_free(cl->secret);
        cl->secret = secret;
        token_drop(cl);
        return 0;
}

size_t client_pending(const Client *cl) {
        return http_pending(cl->http) + cl->queue.n;
}

char *client_url(const Client *cl, ZuoraEndpoint endpoint, const char *env_id, const char *job_id) {
        return zuora_url(cl->config->base_url, endpoint, env_id, job_id);
}

/* scheme, host and port of URL, lowercased, into *ret ("https://h:443"). */
static int url_origin(const char *url, char **ret) {
        CURLU *u = curl_url();
        char *scheme = NULL, *host = NULL, *port = NULL;
        int r = -EINVAL;

        if (!u)
                return -ENOMEM;
        if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
                r = asprintf(ret, "%s://%s:%s", scheme, host, port) < 0 ? -ENOMEM : 0;
                if (r == 0)
                        for (char *p = *ret; *p; p++)
                                *p = (char) tolower((unsigned char) *p);
        }
        curl_free(scheme);
        curl_free(host);
        curl_free(port);
        curl_url_cleanup(u);
        return r;
}

bool client_url_is_ours(const Client *cl, const char *url) {
        _cleanup_free_ char *origin = NULL;
        const char *base = cl->config->base_url;
        size_t n = strlen(base);

        if (!cl->origin)
                return false;
        /* The common case, a URL built from base_url: base_url (which has no
         * trailing '/') then '/' or nothing ends the authority part with the
         * very bytes of base_url's, so the origin is the same. Anything else
         * is parsed. */
        if (strncmp(url, base, n) == 0 && (url[n] == '/' || url[n] == 0))
                return true;
        return url_origin(url, &origin) >= 0 && strcmp(origin, cl->origin) == 0;
}

int client_resolve(const Client *cl, const char *location, char **ret_url) {
        CURLU *u = curl_url();
        char *url = NULL;
        int r = -EINVAL;

        if (!u)
                return -ENOMEM;
        /* Setting a relative URL on a handle that holds base_url resolves it
         * (RFC 3986 section 5). base_url has no trailing slash, so make it a
         * directory first: "/v1" + "jobs/x" must not lose "v1". */
        _cleanup_free_ char *base = NULL;
        if (asprintf(&base, "%s/", cl->config->base_url) < 0) {
                curl_url_cleanup(u);
                return -ENOMEM;
        }
        if (curl_url_set(u, CURLUPART_URL, base, 0) == CURLUE_OK &&
            curl_url_set(u, CURLUPART_URL, location, 0) == CURLUE_OK &&
            curl_url_get(u, CURLUPART_URL, &url, 0) == CURLUE_OK)
                r = 0;
        curl_url_cleanup(u);
        if (r < 0)
                return r;
        if (!client_url_is_ours(cl, url)) {
                *ret_url = strdup(url);
                curl_free(url);
                return *ret_url ? -EPERM : -ENOMEM;
        }
        *ret_url = strdup(url);
        curl_free(url);
        return *ret_url ? 0 : -ENOMEM;
}

/* ---- calls ---- */

static void call_finish(
        ClientCall *call, const HttpResponse *resp, ZuoraVerdict verdict, bool token_failed) {
        char track_id[ZUORA_TRACK_ID_MAX];
        ClientResult result = {
                .verdict = verdict,
                .response = resp,
                .track_id = track_id,
                .token_failed = token_failed,
                .sent_usec = call->sent_usec,
                .received_usec = realtime_usec(),
        };
        ClientDoneFunc done = call->done;
        void *userdata = call->userdata;

        if (resp->error < 0) {
                if (asprintf(&result.zuora_text, "%s", resp->error_text) < 0)
                        result.zuora_text = NULL;
        } else if (verdict != ZUORA_VERDICT_OK)
                result.zuora_text = zuora_error_text(resp->body, resp->body_size);

        /* The call is freed before DONE runs, so that DONE may start another. */
        memcpy(track_id, call->track_id, sizeof(track_id));
        call->request = NULL;
        call_free(call);
        done(&result, userdata);
        free(result.zuora_text);
}

static int call_start(ClientCall *call);
static int token_fetch(Client *cl);

static void call_on_done(HttpRequest *req, const HttpResponse *resp, void *userdata) {
        ClientCall *call = userdata;
        Client *cl = call->client;
        ZuoraVerdict v = zuora_classify(resp->status, resp->error, resp->body, resp->body_size, true);

        client_observe_date(cl, resp, call->sent_usec, realtime_usec());
        call_request_gone(call);
        if (v == ZUORA_VERDICT_REAUTH && !call->reauthenticated) {
                /* The token was refused (revoked, expired early): one more
                 * try with a new one. */
                call->reauthenticated = true;
                call->track_id[0] = 0;
                token_drop(cl);
                if (call_start(call) >= 0)
                        return;
        }
        call_finish(call, resp, v, /* token_failed= */ false);
}

static int call_submit(ClientCall *call) {
        Client *cl = call->client;
        char auth[4200], track[128], entity[300], idem[300];
        const char *headers[6];
        size_t n = 0;
        uint8_t random[16];
        int r;

        /* A fresh id per request, unless the caller chose the first one. */
        if (!call->track_id[0]) {
                if (getrandom(random, sizeof(random), 0) != sizeof(random))
                        return -errno;
                zuora_track_id(random, call->track_id);
        }

        if (!cl->token)
                return -ENOKEY; /* never "Bearer (null)": the callers wait for a token first */
        if ((size_t) snprintf(auth, sizeof(auth), "Authorization: Bearer %s", cl->token) >= sizeof(auth))
                return -E2BIG;
        headers[n++] = auth;
        snprintf(track, sizeof(track), "Zuora-Track-Id: %s", call->track_id);
        headers[n++] = track;
        if (cl->config->entity_id) {
                snprintf(entity, sizeof(entity), "Zuora-Entity-Ids: %s", cl->config->entity_id);
                headers[n++] = entity;
        }
        if (call->idempotency_key) {
                snprintf(idem, sizeof(idem), "Idempotency-Key: %s", call->idempotency_key);
                headers[n++] = idem;
        }
        headers[n++] = "Accept: application/json";
        headers[n] = NULL;

        HttpRequestSpec spec = {
                .method = call->method,
                .url = call->url,
                .headers = headers,
                .body = call->body,
                .body_size = call->body ? strlen(call->body) : 0,
                .content_type = call->body ? "application/json" : NULL,
        };
        call->sent_usec = realtime_usec();
        r = http_submit(cl->http, &spec, call_on_done, call, &call->request);
        explicit_bzero(auth, sizeof(auth));
        if (r >= 0)
                cl->sending++;
        return r;
}

/* Sends CALL, or queues it behind the calls in flight and those already
 * waiting (first come, first sent). */
static int call_send(ClientCall *call) {
        Client *cl = call->client;

        if (!cl->queue.head && cl->sending < cl->config->max_concurrent_requests)
                return call_submit(call);
        call->queued = true;
        LIST_APPEND(queue, &cl->queue, call);
        if (cl->queue.n > cl->queue_high)
                cl->queue_high = cl->queue.n;
        return 0;
}

/* The drain source: waiting calls leave, in order, while there is room. A
 * call that cannot be sent ends with the error, as a request would. */
static int client_on_drain(sd_event_source *s, void *userdata) {
        Client *cl = userdata;

        while (cl->queue.head && cl->sending < cl->config->max_concurrent_requests) {
                ClientCall *call = cl->queue.head;
                int r;

                LIST_REMOVE(queue, &cl->queue, call);
                call->queued = false;
                if (!cl->token) {
                        /* The token went while it waited (a reload, a 401 of
                         * another call): it waits for the next one. */
                        call->waiting_token = true;
                        r = token_fetch(cl);
                } else
                        r = call_submit(call);
                if (r < 0) {
                        HttpResponse resp = { .error = r, .error_text = strerror(-r), .body = "" };
                        call_finish(
                                call, &resp, zuora_classify(0, r, "", 0, true), /* token_failed= */ false);
                }
        }
        if (!cl->queue.head && cl->queue_high >= CLIENT_TRIM_AFTER_QUEUE) {
                /* A wave is through (a thousand polls due together): what its
                 * calls and answers held is free, scattered over the heap, and
                 * malloc keeps it unless asked. */
                cl->queue_high = 0;
                (void) malloc_trim(0);
        }
        return 0;
}

static void token_on_done(HttpRequest *req, const HttpResponse *resp, void *userdata) {
        Client *cl = userdata;
        ZuoraVerdict v = zuora_classify(resp->status, resp->error, resp->body, resp->body_size, true);
        uint64_t expires_in = 0;
        char *token = NULL;

        cl->token_request = NULL;
        client_observe_date(cl, resp, cl->token_sent_usec, realtime_usec());
        if (v == ZUORA_VERDICT_OK && zuora_parse_token(resp->body, resp->body_size, &token, &expires_in) < 0)
                v = ZUORA_VERDICT_RETRY;
        if (v == ZUORA_VERDICT_OK) {
                token_drop(cl);
                cl->token = token;
                cl->token_expires = now_boottime(cl) + expires_in * USEC_PER_SEC;
        }

        /* Wake every call that waited; each either sends now or fails. A
         * token that expires within the renewal window is still used for
         * the calls that waited for it, or they would wait forever. A done
         * callback may cancel other calls, so start from the head each time. */
        for (;;) {
                ClientCall *call = cl->calls.head;
                while (call && !call->waiting_token)
                        call = call->calls_next;
                if (!call)
                        break;
                call->waiting_token = false;
                if (v == ZUORA_VERDICT_OK && call_send(call) >= 0)
                        continue;
                /* A 401 from the token endpoint means the credentials are wrong. */
                call_finish(
                        call,
                        resp,
                        v == ZUORA_VERDICT_OK ? ZUORA_VERDICT_RETRY : v,
                        /* token_failed= */ true);
        }
}

static int token_fetch(Client *cl) {
        _cleanup_free_ char *url = NULL;
        char *body;
        int r;

        if (cl->token_request)
                return 0;
        url = client_url(cl, ZUORA_ENDPOINT_TOKEN, NULL, NULL);
        body = zuora_token_request_body(cl->config->client_id, cl->secret->value);
        if (!url || !body) {
                secret_string_free(body);
                return -ENOMEM;
        }
        HttpRequestSpec spec = {
                .method = HTTP_METHOD_POST,
                .url = url,
                .body = body,
                .body_size = strlen(body),
                .content_type = "application/x-www-form-urlencoded",
        };
        cl->token_sent_usec = realtime_usec();
        r = http_submit(cl->http, &spec, token_on_done, cl, &cl->token_request);
        secret_string_free(body);
        return r;
}

static int call_start(ClientCall *call) {
        Client *cl = call->client;

        if (cl->token && cl->token_expires > now_boottime(cl) + TOKEN_RENEW_USEC)
                return call_send(call);
        call->waiting_token = true;
        return token_fetch(cl);
}

ZuoraAnswer client_result_answer(const ClientResult *result, bool malformed) {
        const HttpResponse *resp = result->response;

        return (ZuoraAnswer) {
                .verdict = malformed ? ZUORA_VERDICT_RETRY : result->verdict,
                .status = resp->status,
                .transport_error = resp->error < 0,
                .token_failed = result->token_failed,
                .malformed = malformed,
                .body_size = resp->body_size,
                .text = result->zuora_text,
        };
}

int client_call(
        Client *cl, const ClientRequest *req, ClientDoneFunc done, void *userdata, ClientCall **ret) {
        const char *body = req->body, *idempotency_key = req->idempotency_key;
        ClientCall *call;
        int r;

        /* Credentials go to base_url's origin and nowhere else. */
        if (!client_url_is_ours(cl, req->url))
                return -EPERM;

        call = calloc(1, sizeof(ClientCall));
        if (!call)
                return -ENOMEM;
        *call = (ClientCall) {
                .client = cl,
                .method = req->method,
                .url = strdup(req->url),
                .body = body ? strdup(body) : NULL,
                .idempotency_key = idempotency_key ? strdup(idempotency_key) : NULL,
                .done = done,
                .userdata = userdata,
        };
        if (req->track_id)
                snprintf(call->track_id, sizeof(call->track_id), "%s", req->track_id);
        LIST_APPEND(calls, &cl->calls, call);
        if (!call->url || (body && !call->body) || (idempotency_key && !call->idempotency_key)) {
                call_free(call);
                return -ENOMEM;
        }
        r = call_start(call);
        if (r < 0) {
                call_free(call);
                return r;
        }
        if (ret)
                *ret = call;
        return 0;
}

void client_cancel(ClientCall *call) {
        call_free(call);
}
